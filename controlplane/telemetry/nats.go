package telemetry

import (
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
)

// Subject is the NATS subject samples are published on:
// racklet.<rack>.telemetry. Core NATS, at most once: a lost sample is
// replaced by the next.
func Subject(rack string) string { return "racklet." + rack + ".telemetry" }

// Publish publishes a sample on Subject(s.Rack).
func Publish(nc *nats.Conn, s Sample) error {
	b, err := Encode(s)
	if err != nil {
		return err
	}
	if err := nc.Publish(Subject(s.Rack), b); err != nil {
		return fmt.Errorf("telemetry: publishing a sample: %w", err)
	}
	return nil
}

// Subscribe keeps l up to date with the rack's samples. Invalid samples
// (and samples of another rack) are logged and dropped. Unsubscribe (or
// close the connection) to stop.
func Subscribe(nc *nats.Conn, rack string, l *Latest, logger *slog.Logger) (*nats.Subscription, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sub, err := nc.Subscribe(Subject(rack), func(m *nats.Msg) {
		s, err := Decode(m.Data)
		if err == nil && s.Rack != rack {
			err = fmt.Errorf("%w: sample of rack %q on rack %q's subject", ErrInvalid, s.Rack, rack)
		}
		if err != nil {
			logger.Warn("dropping a telemetry sample", "err", err)
			return
		}
		l.Put(s)
	})
	if err != nil {
		return nil, fmt.Errorf("telemetry: subscribing to %s: %w", Subject(rack), err)
	}
	return sub, nil
}
