"""`make bench`'s blob store bench still runs: a 1 MiB task file and bundle through S3 on moto's server
(every download checked against its sha256 on the way), one round against raw put/get. The figures
themselves are the bench's (benchmarks/RESULTS.md), not asserted here."""

from benchmarks import blob_bench


def test_the_blob_bench_runs_each_path_at_a_tiny_size():
    ratios = blob_bench.main(mib=1, rounds=1)
    assert set(ratios) == {"task file", "bundle"}
    assert all(ratio > 0 for ratio in ratios.values())
