"""Sections of the real-data benchmark: each module has run(data_dir) -> dict and markdown(result) -> str."""
