#!/usr/bin/env bash
# What the page tests render with, from Debian, installed once (idempotent): a real headless
# browser (Chromium; Playwright drives it through executable_path and never downloads one of its
# own) and Graphviz, whose `dot` lays out the console's topology picture.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "${missing[*]} missing: run 'sudo apt-get install -y ${missing[*]}'" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
