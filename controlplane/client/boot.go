package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/events"
)

// SetBoot sets a node's desired boot spec and returns the committed
// node.boot.desired event. The boot reconciler verifies the image and
// boots the node; follow the node's events to see how it goes.
func (c *Client) SetBoot(ctx context.Context, name string, req api.BootRequest) (events.Event, error) {
	var cr api.CommandResponse
	if err := c.do(ctx, http.MethodPut, "/v1/nodes/"+url.PathEscape(name)+"/boot", nil, req, &cr); err != nil {
		return events.Event{}, err
	}
	return cr.Event, nil
}

// ReportBootStage reports the boot stage a node reached (or a failure in
// it), as the node's boot environment does.
func (c *Client) ReportBootStage(ctx context.Context, name string, rep api.BootStageReport) (api.BootStageResponse, error) {
	var out api.BootStageResponse
	err := c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(name)+"/boot/stages", nil, rep, &out)
	return out, err
}
