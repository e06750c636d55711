package client

import (
	"context"
	"net/http"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/events"
)

// Telemetry returns the latest sensor sample the member received.
func (c *Client) Telemetry(ctx context.Context) (api.TelemetryResponse, error) {
	var tr api.TelemetryResponse
	err := c.do(ctx, http.MethodGet, "/v1/telemetry", nil, nil, &tr)
	return tr, err
}

// Fans returns the fans, the duty, fail-safe, the fan policy and the
// raised alarms.
func (c *Client) Fans(ctx context.Context, opts ...ReadOption) (api.FansResponse, error) {
	var fr api.FansResponse
	err := c.do(ctx, http.MethodGet, "/v1/fans", readQuery(opts), nil, &fr)
	return fr, err
}

// FanPolicy returns the fan policy in the log (an *APIError with code
// not_found if none was set).
func (c *Client) FanPolicy(ctx context.Context, opts ...ReadOption) (api.FanPolicyResponse, error) {
	var fp api.FanPolicyResponse
	err := c.do(ctx, http.MethodGet, "/v1/fan-policy", readQuery(opts), nil, &fp)
	return fp, err
}

// SetFanPolicy sets the rack's fan policy and returns the committed event.
func (c *Client) SetFanPolicy(ctx context.Context, p events.FanPolicy) (events.Event, error) {
	var cr api.CommandResponse
	if err := c.do(ctx, http.MethodPut, "/v1/fan-policy", nil, p, &cr); err != nil {
		return events.Event{}, err
	}
	return cr.Event, nil
}
