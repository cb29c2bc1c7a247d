#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	systemctl enable sluice.service || true
	systemctl restart sluice.service || true
fi
