package bootstrap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/racklet/rack/events"
)

// Stage is how far the boot environment has come; the boot reconciler
// follows these.
type Stage string

const (
	// StageBootstrap: the boot environment has started (it fetches and
	// verifies the image in this stage).
	StageBootstrap Stage = "bootstrap"
	// StageImageVerified: the image's signature and digest verified; the
	// boot environment hands over to its kernel next.
	StageImageVerified Stage = "image-verified"
)

// MaxReason bounds a failure reason; longer ones are cut.
const MaxReason = 1024

// ErrReport: a stage report that was refused or could not be delivered.
var ErrReport = errors.New("bootstrap: stage report failed")

// Report is one stage report, as the control plane takes it at
// POST /v1/nodes/<node>/boot/stages.
type Report struct {
	Stage Stage `json:"stage"`
	// Failed says the boot failed in Stage; Reason says why.
	Failed bool   `json:"failed"`
	Reason string `json:"reason,omitempty"`
	// ImageDigest is the verified image's digest, "sha256:<hex>".
	ImageDigest string `json:"imageDigest,omitempty"`
}

// Validate checks a report before it is sent.
func (r Report) Validate() error {
	switch {
	case r.Stage != StageBootstrap && r.Stage != StageImageVerified:
		return fmt.Errorf("%w: unknown stage %q", ErrReport, clip(string(r.Stage)))
	case r.Failed && r.Reason == "":
		return fmt.Errorf("%w: a failed stage needs a reason", ErrReport)
	case !r.Failed && r.Reason != "":
		return fmt.Errorf("%w: only a failed stage has a reason", ErrReport)
	case len(r.Reason) > MaxReason || !utf8.ValidString(r.Reason) ||
		strings.ContainsFunc(r.Reason, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }):
		return fmt.Errorf("%w: reason is not text of at most %d bytes without control characters", ErrReport, MaxReason)
	}
	if r.ImageDigest != "" {
		if _, err := ParseDigest(r.ImageDigest); err != nil {
			return fmt.Errorf("%w: %v", ErrReport, err)
		}
	}
	return nil
}

// failure is the report of a boot that failed in stage because of err.
func failure(stage Stage, err error, digest string) Report {
	reason := strings.ReplaceAll(strings.ToValidUTF8(err.Error(), "?"), "\n", "; ")
	reason = strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return ' '
		}
		return r
	}, reason)
	if len(reason) > MaxReason {
		cut := MaxReason - len("…")
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut] + "…"
	}
	return Report{Stage: stage, Failed: true, Reason: reason, ImageDigest: digest}
}

// Reporter tells the control plane how far the boot has come.
type Reporter interface {
	// Report delivers one report, or fails once ctx ends or its own
	// bounded retries are spent.
	Report(ctx context.Context, r Report) error
}

// HTTPReporter posts reports to the control plane's API, as JSON to
// <API>/v1/nodes/<Node>/boot/stages. Each attempt tries the APIs in turn
// (failover to the next member on a connection error or 5xx); a 4xx but
// 408 and 429 is final (a refused credential, 401 or 403, too). Attempts
// are bounded by Retry and Timeout.
//
// On a control plane with authentication the node proves who it is with
// Token (sent as "Authorization: Bearer") or with a client certificate in
// Client (NewReportClient), or both; the control plane lets a node's
// identity report that node's stages and nothing else.
type HTTPReporter struct {
	Client *http.Client
	APIs   []string
	Node   string
	// Token, if set, is sent as "Authorization: Bearer <Token>" (never
	// logged, never in an error).
	Token Secret
	// Retry bounds the rounds over all APIs (default 3 attempts from 1 s).
	Retry Retry
	// Timeout bounds one request (default 5 s).
	Timeout time.Duration
}

var _ Reporter = (*HTTPReporter)(nil)

// maxErrorBody bounds how much of an error response is kept.
const maxErrorBody = 512

// Report implements Reporter.
func (h *HTTPReporter) Report(ctx context.Context, r Report) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if !events.ValidName(h.Node) {
		return fmt.Errorf("%w: node %q is not a name", ErrReport, clip(h.Node))
	}
	if len(h.APIs) == 0 {
		return fmt.Errorf("%w: no API URL", ErrReport)
	}
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("%w: encoding: %v", ErrReport, err)
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	err = h.Retry.do(ctx, func(ctx context.Context) error {
		var last error
		for _, api := range h.APIs {
			err := h.post(ctx, timeout, api, body)
			var perm *permanentError
			if err == nil || errors.As(err, &perm) {
				return err
			}
			last = err
		}
		return last
	})
	if err != nil {
		return fmt.Errorf("reporting stage %s: %w", r.Stage, err)
	}
	return nil
}

func (h *HTTPReporter) post(ctx context.Context, timeout time.Duration, api string, body []byte) error {
	if err := CheckURL(api); err != nil {
		return &permanentError{err}
	}
	u, err := url.JoinPath(api, "v1", "nodes", h.Node, "boot", "stages")
	if err != nil {
		return &permanentError{fmt.Errorf("%w: %v", ErrReport, err)}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return &permanentError{fmt.Errorf("%w: %v", ErrReport, err)}
	}
	req.Header.Set("Content-Type", "application/json")
	if h.Token != "" {
		req.Header.Set("Authorization", "Bearer "+string(h.Token))
	}
	client := h.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrReport, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = fmt.Errorf("%w: %s: %s %s", ErrReport, api, resp.Status, strings.TrimSpace(strings.ToValidUTF8(string(msg), "?")))
	if transientStatus(resp.StatusCode) {
		return err
	}
	return &permanentError{err}
}

// Recorder is a Reporter that keeps what it is told, for tests and dry
// runs. Err, if set, is returned by every Report (after recording it).
type Recorder struct {
	mu      sync.Mutex
	reports []Report
	Err     error
}

var _ Reporter = (*Recorder)(nil)

// Report implements Reporter.
func (r *Recorder) Report(ctx context.Context, rep Report) error {
	if err := rep.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reports = append(r.reports, rep)
	return r.Err
}

// Reports returns a copy of the reports so far, in order.
func (r *Recorder) Reports() []Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Report(nil), r.reports...)
}
