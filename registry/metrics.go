package registry

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics holds the collectors registered on Options.Metrics. A nil *metrics
// collects nothing, so callers need no checks.
type metrics struct {
	requests        *prometheus.CounterVec   // method, route, status
	duration        *prometheus.HistogramVec // method, route
	requestBytes    *prometheus.CounterVec   // route
	responseBytes   *prometheus.CounterVec   // route
	uploadsInFlight prometheus.Gauge
	storageFull     prometheus.Counter
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_http_requests_total",
			Help: "HTTP requests answered, by method, route template and status.",
		}, []string{"method", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_http_request_duration_seconds",
			Help:    "Time from the start of a request to the end of its response, by method and route template.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"method", "route"}),
		requestBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_http_request_bytes_total",
			Help: "Request body bytes read, by route template.",
		}, []string{"route"}),
		responseBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_http_response_bytes_total",
			Help: "Response body bytes written, by route template.",
		}, []string{"route"}),
		uploadsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_uploads_in_progress",
			Help: "Requests currently streaming a blob upload body.",
		}),
		storageFull: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_storage_full_refusals_total",
			Help: "Write requests answered 507 because the storage had no space left.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.requestBytes, m.responseBytes, m.uploadsInFlight, m.storageFull} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// uploadStarted counts an upload body being streamed; call the returned
// function when it is done.
func (m *metrics) uploadStarted() func() {
	if m == nil {
		return func() {}
	}
	m.uploadsInFlight.Inc()
	return m.uploadsInFlight.Dec
}

// methods are the method label values; anything else is "OTHER", so that a
// client cannot grow the label set.
var methods = [...]string{"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OTHER"}

func methodIndex(m string) int {
	switch m {
	case http.MethodGet:
		return 0
	case http.MethodHead:
		return 1
	case http.MethodPut:
		return 2
	case http.MethodPost:
		return 3
	case http.MethodPatch:
		return 4
	case http.MethodDelete:
		return 5
	}
	return 6
}

// routeMetrics are the children of one route template, made once (bytes) or
// on first use (per method and status), so that a request only looks them up.
type routeMetrics struct {
	m             *metrics
	route         string
	requestBytes  prometheus.Counter
	responseBytes prometheus.Counter
	duration      [len(methods)]atomic.Pointer[prometheus.Observer]
	requests      sync.Map // methodIndex*1000 + status -> prometheus.Counter
}

func (m *metrics) forRoute(route string) *routeMetrics {
	if m == nil {
		return nil
	}
	return &routeMetrics{
		m:             m,
		route:         route,
		requestBytes:  m.requestBytes.WithLabelValues(route),
		responseBytes: m.responseBytes.WithLabelValues(route),
	}
}

// observe records one finished request.
func (rm *routeMetrics) observe(method string, status int, in, out int64, seconds float64) {
	if rm == nil {
		return
	}
	mi := methodIndex(method)
	key := mi*1000 + status
	c, ok := rm.requests.Load(key)
	if !ok {
		c, _ = rm.requests.LoadOrStore(key, rm.m.requests.WithLabelValues(methods[mi], rm.route, strconv.Itoa(status)))
	}
	c.(prometheus.Counter).Inc()
	d := rm.duration[mi].Load()
	if d == nil {
		o := rm.m.duration.WithLabelValues(methods[mi], rm.route)
		rm.duration[mi].CompareAndSwap(nil, &o)
		d = rm.duration[mi].Load()
	}
	(*d).Observe(seconds)
	if in > 0 {
		rm.requestBytes.Add(float64(in))
	}
	if out > 0 {
		rm.responseBytes.Add(float64(out))
	}
}
