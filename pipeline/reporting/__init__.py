"""Human-readable views of a run: metric and param diffs against a git revision, and the HTML report."""
