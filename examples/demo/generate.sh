#!/usr/bin/env bash
# Regenerate demo_pb2*.py from demo.proto (needs grpcio-tools: pip install '.[dev]').
# The output is committed; tests/test_example.py checks that this script, run with
# grpcio-tools 1.85.1 (the GRPC_GENERATED_VERSION in demo_pb2_grpc.py), reproduces it
# byte for byte. PYTHON picks the interpreter (default: python3).
set -euo pipefail
cd "$(dirname "$0")"
"${PYTHON:-python3}" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. demo.proto
