"""The benchmark folder holds scripts, not tests: pytest collects nothing here (run bench_advise.py directly)."""

collect_ignore_glob = ["*.py"]
