"""The payload codec and its key file, without a server: what is sealed, what opens it, what refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload

from workers.encryption import (
    ENCODING,
    EncryptionCodec,
    KeyRing,
    KeyRingError,
    UnknownKey,
    data_converter,
    local_entry,
    write_key_file,
)

SECRET = "eyJhbGciOiJFUzI1NiJ9.secret-token"


def ring(tmp_path: Path, *ids: str, write: str | None = None) -> KeyRing:
    entries = [local_entry(i) for i in ids]
    write_key_file(tmp_path / "keys.json", entries, write or ids[-1])
    return KeyRing.load(tmp_path / "keys.json")


async def test_a_payload_is_sealed_and_opens_with_its_key(tmp_path: Path):
    converter = data_converter(ring(tmp_path, "k1"))
    [sealed] = await converter.encode([{"token": SECRET}])
    assert sealed.metadata["encoding"] == ENCODING and sealed.metadata["encryption-key-id"] == b"k1"
    assert b"secret-token" not in sealed.SerializeToString()
    assert await converter.decode([sealed], [dict]) == [{"token": SECRET}]


async def test_old_keys_still_open_after_rotation_and_new_payloads_use_the_writing_key(tmp_path: Path):
    first = ring(tmp_path, "k1")
    [old] = await data_converter(first).encode(["written under k1"])
    rotated_entries = json.loads((tmp_path / "keys.json").read_text())["keys"] + [local_entry("k2")]
    write_key_file(tmp_path / "keys.json", rotated_entries, "k2")
    rotated = data_converter(KeyRing.load(tmp_path / "keys.json"))
    assert await rotated.decode([old], [str]) == ["written under k1"]
    [new] = await rotated.encode(["written under k2"])
    assert new.metadata["encryption-key-id"] == b"k2"


async def test_a_payload_of_a_removed_key_is_refused_by_name(tmp_path: Path):
    [sealed] = await data_converter(ring(tmp_path, "k1")).encode(["x"])
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(UnknownKey, match="'k1'.*holds k9"):
        await EncryptionCodec(ring(other, "k9")).decode([sealed])


async def test_a_relabelled_or_altered_payload_does_not_open(tmp_path: Path):
    codec = EncryptionCodec(ring(tmp_path, "k1", "k2", write="k1"))
    [sealed] = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')])
    relabelled = Payload(metadata={**sealed.metadata, "encryption-key-id": b"k2"}, data=sealed.data)
    with pytest.raises(KeyRingError, match="does not authenticate"):
        await codec.decode([relabelled])
    altered = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(KeyRingError, match="does not authenticate"):
        await codec.decode([altered])


async def test_a_payload_written_in_clear_is_read_as_it_is(tmp_path: Path):
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"mode": "drill"}')
    assert await EncryptionCodec(ring(tmp_path, "k1")).decode([plain]) == [plain]


@pytest.mark.parametrize("document, problem", [
    ({"writeKey": "k1", "keys": [{"id": "k1", "material": "not base64!"}]}, r"keys\[0\]: \"material\" is not base64"),
    ({"writeKey": "k1", "keys": [{"id": "k1", "material": "AAAA"}]}, "key 'k1' is 3 bytes"),
    ({"writeKey": "k2", "keys": [local_entry("k1")]}, "writing key 'k2' is not among the keys"),
    ({"writeKey": "k1", "keys": [local_entry("k1"), local_entry("k1")]}, r"keys\[1\]: key id 'k1' appears twice"),
    ({"writeKey": "k1", "keys": [{"id": "k1"}]}, r"keys\[0\]: needs \"material\""),
    ({"keys": "k1"}, "expected"),
])
def test_a_bad_key_file_is_refused_naming_the_file_and_entry(tmp_path: Path, document: dict, problem: str):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(document))
    with pytest.raises(KeyRingError, match=problem) as raised:
        KeyRing.load(path)
    assert str(path) in str(raised.value)
