package main

import (
	"fmt"
	"log/slog"

	"github.com/sluiceio/sluice/agent/config"
	"github.com/sluiceio/sluice/uplink"
)

// newUplink builds the uplink a config entry describes.
func newUplink(cfg *config.Config, u config.Uplink, log *slog.Logger) (uplink.Uplink, error) {
	subject, err := uplink.ParseSubject(u.NATS.Subject)
	if err != nil {
		return nil, fmt.Errorf("uplink %s: %w", u.Name, err)
	}
	return uplink.NewNATS(u.Name, u.NATS.URL,
		uplink.WithGateway(cfg.Gateway),
		uplink.WithSubject(subject),
		uplink.WithMaxInFlight(u.NATS.MaxInFlight),
		uplink.WithLogger(log))
}
