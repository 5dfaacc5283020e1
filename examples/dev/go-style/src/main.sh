#!/bin/sh
# The "binary": prints a heartbeat forever.
while true; do echo "go-style running"; sleep 5; done
