"""Sections of benchmarks/bench_real.py: each module has run(data_dir) -> dict and markdown(result) -> str."""
