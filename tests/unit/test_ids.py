from core.ids import ID_LENGTH, is_ours, new_id


def test_ids_verify_with_their_key_only():
    a = new_id(b"k1")
    assert len(a) == ID_LENGTH and is_ours(a, b"k1")
    assert not is_ours(a, b"k2")
    assert not is_ours(a[:-1] + ("0" if a[-1] != "0" else "1"), b"k1")
    assert not is_ours("not-an-id", b"k1")
    assert len({new_id(b"k1") for _ in range(1000)}) == 1000
