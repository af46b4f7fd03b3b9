"""Benchmarks of geoloc_ros: each module ``bench/<area>.py`` has ``run(out_dir, quick=False) -> dict``,
prints a table and writes ``bench_out/<area>.json``. They never assert timings."""
