package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// FirmwareList returns the firmware components ("<node>-bmc"): desired and
// observed versions, last update step and refusal; sorted by slot.
func (c *Client) FirmwareList(ctx context.Context, opts ...ReadOption) ([]*state.Firmware, error) {
	var fl api.FirmwareList
	if err := c.do(ctx, http.MethodGet, "/v1/firmware", readQuery(opts), nil, &fl); err != nil {
		return nil, err
	}
	return fl.Firmware, nil
}

// Firmware returns one firmware component.
func (c *Client) Firmware(ctx context.Context, name string, opts ...ReadOption) (*state.Firmware, error) {
	var f state.Firmware
	if err := c.do(ctx, http.MethodGet, "/v1/firmware/"+url.PathEscape(name), readQuery(opts), nil, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// SetFirmware sets the firmware version a component should run and
// returns the committed event; its Sequence says where in the log it is.
func (c *Client) SetFirmware(ctx context.Context, name, version string) (events.Event, error) {
	var cr api.CommandResponse
	if err := c.do(ctx, http.MethodPut, "/v1/firmware/"+url.PathEscape(name), nil, api.FirmwareRequest{Version: version}, &cr); err != nil {
		return events.Event{}, err
	}
	return cr.Event, nil
}
