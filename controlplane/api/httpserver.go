package api

import (
	"log/slog"
	"net/http"
	"time"
)

// Timeouts of the http.Server that NewHTTPServer returns.
const (
	// ReadHeaderTimeout bounds reading a request's headers (slowloris).
	ReadHeaderTimeout = 5 * time.Second
	// ReadTimeout bounds reading a whole request, body included. Event
	// streams clear it once their request is read.
	ReadTimeout = 30 * time.Second
	// IdleTimeout bounds an idle keep-alive connection.
	IdleTimeout = 120 * time.Second
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes = 64 << 10
)

// NewHTTPServer returns an http.Server for h on addr with the API's
// timeouts and limits.
//
// It sets no WriteTimeout: that would cut every event stream. Instead the
// Server bounds each write itself (http.ResponseController): ordinary
// requests get their RequestTimeout plus a margin, a stream gets a fresh
// deadline of two keep-alive intervals before each write, so a client that
// stops reading is dropped.
func NewHTTPServer(addr string, h http.Handler, logger *slog.Logger) *http.Server {
	if logger == nil {
		logger = discardLogger
	}
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}
