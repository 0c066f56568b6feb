"""Payload encryption: every payload the client and the worker write to Temporal (inputs, results, update and signal
arguments, query answers, memo, summaries, failures' messages and details, heartbeat details) is sealed with
AES-256-GCM before it leaves the process, so a namespace's histories hold no token, ExternalId or account id in
clear. Search attributes stay clear (the server indexes them): they carry only the plan name, mode, phase, status and
initiator.

Keys are identified by id. A key ring has one writing key and any number of older keys that still decrypt, so a key
rotates without breaking a run written under the previous one: add the new key as the writing key, keep the old one
until no history it sealed is still open or retained. A key's material is either in the key file (the sandbox, the
demo, tests: `drctl auth init` writes one) or a data key wrapped by AWS KMS (production: the file then holds only
the KMS ciphertext, and the worker unwraps it with kms:Decrypt at start).

A payload that is not ours (`temporal workflow start --input` without the codec endpoint) is passed through as it
is: it was written in clear, and refusing to read it would only break the run that the caller started.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverter, PayloadCodec, PayloadConverter
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

from contracts.lifecycle import QUERY_REFUSED

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
KEYS_FILE_ENV = "DR_PAYLOAD_KEYS_FILE"
_NONCE_BYTES = 12  # GCM's standard nonce; random per payload (2^32 payloads per key keep collisions negligible)
# Bound to every KMS data key: a ciphertext blob taken from another application's key file does not unwrap here.
KMS_CONTEXT_PURPOSE = "dr-orchestrator-payloads"


class KeyRingError(Exception):
    """The key configuration cannot be used: why, naming the file and the entry (never key material)."""


class UnknownKey(KeyRingError):
    """A payload sealed with a key this ring does not hold (an old key removed too early, another deployment's)."""


@dataclass(frozen=True)
class KeyRing:
    write_key: str
    keys: Mapping[str, bytes] = dataclasses.field(repr=False)  # id -> 32 bytes of AES-256 key

    def __post_init__(self) -> None:
        if self.write_key not in self.keys:
            raise KeyRingError(f"writing key {self.write_key!r} is not among the keys ({', '.join(self.keys)})")
        for key_id, material in self.keys.items():
            if len(material) != 32:
                raise KeyRingError(f"key {key_id!r} is {len(material)} bytes; AES-256 needs 32")

    @classmethod
    def load(cls, path: Path, kms: Any = None) -> KeyRing:
        """The ring a key file describes; `kms(region)` returns a boto3 KMS client (default: boto3's own), used
        only for entries wrapped by KMS."""
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise KeyRingError(f"{path}: cannot read the payload key file: {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise KeyRingError(f"{path}: expected {{\"writeKey\": ID, \"keys\": [...]}}")
        keys: dict[str, bytes] = {}
        for number, entry in enumerate(document["keys"]):
            where = f"{path}: keys[{number}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
                raise KeyRingError(f"{where}: every key needs an \"id\"")
            if entry["id"] in keys:
                raise KeyRingError(f"{where}: key id {entry['id']!r} appears twice")
            keys[entry["id"]] = _material(entry, where, kms)
        write_key = document.get("writeKey")
        if not isinstance(write_key, str):
            raise KeyRingError(f"{path}: \"writeKey\" must name one of the keys")
        try:
            return cls(write_key, keys)
        except KeyRingError as exc:
            raise KeyRingError(f"{path}: {exc}") from None


def _material(entry: dict[str, Any], where: str, kms: Any) -> bytes:
    if "material" in entry:
        try:
            return base64.b64decode(entry["material"], validate=True)
        except (ValueError, TypeError):
            raise KeyRingError(f"{where}: \"material\" is not base64") from None
    wrapped = entry.get("kms")
    if not isinstance(wrapped, dict) or not wrapped.get("keyId") or not wrapped.get("ciphertext"):
        raise KeyRingError(f"{where}: needs \"material\" (base64) or \"kms\": {{\"keyId\", \"ciphertext\"}}")
    client = (kms or _boto3_kms)(wrapped.get("region"))
    try:
        answer = client.decrypt(CiphertextBlob=base64.b64decode(wrapped["ciphertext"]), KeyId=wrapped["keyId"],
                                EncryptionContext=kms_context(entry["id"]))
    except Exception as exc:  # botocore's errors: access denied, key disabled, wrong context, no network
        raise KeyRingError(f"{where}: KMS cannot unwrap key {entry['id']!r} with {wrapped['keyId']}: {exc}") \
            from None
    return bytes(answer["Plaintext"])


def _boto3_kms(region: str | None) -> Any:
    import boto3

    return boto3.client("kms", region_name=region) if region else boto3.client("kms")


def kms_context(key_id: str) -> dict[str, str]:
    return {"purpose": KMS_CONTEXT_PURPOSE, "keyId": key_id}


def local_entry(key_id: str) -> dict[str, Any]:
    """A new key whose material lives in the key file (sandbox, demo, tests)."""
    return {"id": key_id, "material": base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}


def kms_entry(key_id: str, kms_key_id: str, region: str | None = None, kms: Any = None) -> dict[str, Any]:
    """A new data key generated and wrapped by the KMS key `kms_key_id`; only the wrapped form is kept."""
    client = (kms or _boto3_kms)(region)
    answer = client.generate_data_key(KeyId=kms_key_id, KeySpec="AES_256", EncryptionContext=kms_context(key_id))
    wrapped = {"keyId": kms_key_id, "ciphertext": base64.b64encode(answer["CiphertextBlob"]).decode()}
    return {"id": key_id, "kms": {**wrapped, **({"region": region} if region else {})}}


def write_key_file(path: Path, entries: Sequence[dict[str, Any]], write_key: str) -> None:
    """Writes the key file readable by its owner only (it may hold key material)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump({"writeKey": write_key, "keys": list(entries)}, file, indent=2)
        file.write("\n")
    path.chmod(0o600)


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM per payload: the whole serialized payload (metadata and data) is sealed, the key id is bound as
    associated data, so a payload cannot be relabelled with another key's id."""

    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring
        self._ciphers = {key_id: AESGCM(material) for key_id, material in ring.keys.items()}

    @property
    def writing_key(self) -> str:
        return self._ring.write_key

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.seal(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.open(p) for p in payloads]

    def seal(self, payload: Payload) -> Payload:
        key_id = self._ring.write_key
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed)

    def open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written in clear by a caller without the codec: nothing to open
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKey(f"payload sealed with key {key_id!r}, which is not in this key ring "
                             f"(it holds {', '.join(sorted(self._ciphers))})")
        try:
            opened = cipher.decrypt(payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:], key_id.encode())
        except InvalidTag:
            raise KeyRingError(f"payload sealed with key {key_id!r} does not authenticate (altered, or another "
                               "key under the same id)") from None
        return Payload.FromString(opened)


class SealedFailureConverter(DefaultFailureConverter):
    """Failures' messages and stack traces move into their encoded attributes, which the codec seals; except a
    query's refusal (QUERY_REFUSED): the server hands the querying caller only its message, as plain text that no
    codec opens, and never writes it to history. Sealed, `drctl drill status` of a run that never started, or an
    audit query with the wrong token, would read `refused: Encoded failure`."""

    def __init__(self) -> None:
        super().__init__(encode_common_attributes=True)

    def to_failure(self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure) -> None:
        super().to_failure(exception, payload_converter, failure)
        if isinstance(exception, ApplicationError) and exception.type == QUERY_REFUSED:
            failure.message = exception.message
            failure.ClearField("encoded_attributes")


def data_converter(ring: KeyRing | None) -> DataConverter:
    """The pydantic converter; with a key ring, every payload sealed, and failures' messages and stack traces moved
    into their encoded attributes so that the codec seals them too. Without a ring payloads are written in clear."""
    if ring is None:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, payload_codec=EncryptionCodec(ring),
                               failure_converter_class=SealedFailureConverter)
