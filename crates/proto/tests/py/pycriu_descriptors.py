# Prints, as JSON, the descriptors of every message and enum that pycriu
# (Debian's CRIU 3.17) ships: pycriu.rpc_pb2 and pycriu/images/*_pb2.py.
# crates/proto/tests/descriptors.rs compares them with ours.
import importlib
import json
import os

import pycriu.images
from pycriu.images import opts_pb2

modules = ["pycriu.rpc_pb2"]
images_dir = os.path.dirname(pycriu.images.__file__)
for entry in sorted(os.listdir(images_dir)):
    if entry.endswith("_pb2.py"):
        modules.append("pycriu.images." + entry[:-3])

messages = {}
enums = {}


def criu_options(field):
    options = field.GetOptions()
    if not options.HasExtension(opts_pb2.criu):
        return {}
    return {f.name: str(v).lower() if isinstance(v, bool) else str(v)
            for f, v in options.Extensions[opts_pb2.criu].ListFields()}


def walk_enum(descriptor, source):
    enums[descriptor.full_name] = {
        "file": source,
        "values": {v.name: v.number for v in descriptor.values},
    }


def walk_message(descriptor, source):
    fields = []
    for field in descriptor.fields:
        if field.message_type is not None:
            type_name = field.message_type.full_name
        elif field.enum_type is not None:
            type_name = field.enum_type.full_name
        else:
            type_name = ""
        fields.append({
            "name": field.name,
            "number": field.number,
            "type": field.type,
            "label": field.label,
            "type_name": type_name,
            "options": criu_options(field),
        })
    messages[descriptor.full_name] = {"file": source, "fields": fields}
    for nested in descriptor.nested_types:
        walk_message(nested, source)
    for nested in descriptor.enum_types:
        walk_enum(nested, source)


for name in modules:
    module = importlib.import_module(name)
    file_descriptor = module.DESCRIPTOR
    for message in file_descriptor.message_types_by_name.values():
        walk_message(message, file_descriptor.name)
    for enum in file_descriptor.enum_types_by_name.values():
        walk_enum(enum, file_descriptor.name)

print(json.dumps({"messages": messages, "enums": enums}, sort_keys=True))
