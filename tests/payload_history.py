"""Reading a run's history as the server stores it: through the API with a client that has no codec, every payload
found in it (inputs, results, update arguments, memo, failures' encoded attributes), and what they open to."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from workers.encryption import KEY_ID, EncryptionCodec, KeyRing


def without_codec(client: Client) -> Client:
    """The same connection and namespace, no codec: what anyone who may read the namespace's histories gets."""
    return Client(client.service_client, namespace=client.namespace, data_converter=pydantic_data_converter)


async def raw_history(client: Client, workflow_id: str) -> WorkflowHistory:
    return await without_codec(client).get_workflow_handle(workflow_id).fetch_history()


def serialized(history: WorkflowHistory) -> bytes:
    """Every byte of the history: the protobuf of each event (payload data as stored) and its JSON form."""
    return b"".join(e.SerializeToString() for e in history.events) + history.to_json().encode()


def payloads_in(message: Message, search_attributes: bool = False) -> Iterator[Payload]:
    """Every Payload anywhere in `message`, at any depth (maps such as memo and header fields included); search
    attributes only if asked: the server indexes them, so they are written in clear by design."""
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE or (field.name == "search_attributes" and not search_attributes):
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].type != FieldDescriptor.TYPE_MESSAGE:
                continue
            items: Any = value.values()
        elif field.is_repeated:
            items = value
        else:
            items = [value]
        for item in items:
            if isinstance(item, Payload):
                yield item
            else:
                yield from payloads_in(item, search_attributes)


def opened(history: WorkflowHistory, ring: KeyRing) -> bytes:
    """Every payload of the history opened with `ring`, serialized: what the codec server shows an authorized reader."""
    codec = EncryptionCodec(ring)
    return b"".join(codec.open(p).SerializeToString() for e in history.events for p in payloads_in(e))


def key_ids(message: Message) -> set[str]:
    """The key ids the payloads of one event are sealed with ("" for a payload in clear)."""
    return {p.metadata.get(KEY_ID, b"").decode() for p in payloads_in(message)}


def clear_payloads(message: Message) -> list[str]:
    """Where in one event a payload is in clear, by field path: for a failing assertion to say what leaked."""
    found = []
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE or field.name == "search_attributes":
            continue
        items = value.values() if field.message_type.GetOptions().map_entry and \
            field.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE else \
            ([] if field.message_type.GetOptions().map_entry else value if field.is_repeated else [value])
        for item in items:
            if isinstance(item, Payload):
                if KEY_ID not in item.metadata:
                    found.append(field.name)
            else:
                found += [f"{field.name}.{inner}" for inner in clear_payloads(item)]
    return found
