"""Fuzz targets: one module per target, each with `fuzz_one(data: bytes)` (docs/fuzzing.md).

`fuzz_one` raises only on a bug (an AssertionError for a broken property, or the unexpected
exception itself); every input that merely is not valid is absorbed. The same function is
driven by three runners: the corpus replay and hypothesis examples in test_fuzz.py
(`make test`), and atheris (libFuzzer) through `python -m tests.fuzz TARGET` (`make fuzz`).
"""
