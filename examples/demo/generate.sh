#!/usr/bin/env bash
# Regenerate demo_pb2*.py from demo.proto (needs grpcio-tools: pip install '.[dev]').
# The output is committed; a test checks it matches what this script makes.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. demo.proto
