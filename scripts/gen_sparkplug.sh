#!/usr/bin/env bash
# Regenerate inspector/outputs/mqtt/sparkplug/sparkplug_b_pb2.py from sparkplug_b.proto
# with the protoc of grpcio-tools (a dev dependency; the service needs only protobuf).
# tests/unit/test_sparkplug_payload.py fails when the committed module is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
"$py" -m grpc_tools.protoc --proto_path=inspector/outputs/mqtt/sparkplug \
    --python_out=inspector/outputs/mqtt/sparkplug sparkplug_b.proto
echo "wrote inspector/outputs/mqtt/sparkplug/sparkplug_b_pb2.py"
