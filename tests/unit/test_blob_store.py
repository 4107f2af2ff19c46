from stores.blob_store import BlobStore


def test_a_blob_is_found_by_its_sha256_and_a_damaged_or_unknown_one_is_not(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    digest = store.put("line\n" * 1000)
    assert store.put("line\n" * 1000) == digest  # content-addressed: a redelivery writes nothing new
    assert store.get(digest) == "line\n" * 1000
    (tmp_path / "blobs" / digest).write_text("line\n")  # truncated or replaced
    assert store.get(digest) is None
    assert store.get("0" * 64) is None
    assert store.get("../../etc/passwd") is None  # not a sha256: never a path
