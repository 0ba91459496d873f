#!/usr/bin/env bash
# System packages and services the full test suite needs; idempotent. Extended by the sandbox work (Docker).
set -euo pipefail
exit 0
