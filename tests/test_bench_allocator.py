"""benchmarks/bench_allocator.py runs each allocator setting in a child process of its own."""

from conftest import load_benchmark


def test_each_setting_reaches_its_own_child_process(monkeypatch, capsys):
    bench = load_benchmark("bench_allocator")
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "7")  # the parent's own setting must not leak
    rows = bench.main(["--length", "300", "--batch", "1", "--preset", "soft", "--repeats", "1"])
    assert list(rows) == ["default", "hugepages", "heap"]
    assert rows["default"]["environment"] == {}
    assert rows["hugepages"]["environment"] == {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    assert rows["heap"]["environment"] == {"MALLOC_MMAP_MAX_": "0",
                                           "MALLOC_TRIM_THRESHOLD_": str(8 << 30)}
    assert all(row["forward_s"] > 0 and row["peak_rss_gib"] > 0 for row in rows.values())
    assert "speed-up" in capsys.readouterr().out
