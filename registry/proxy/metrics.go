package proxy

import "github.com/prometheus/client_golang/prometheus"

// metrics holds the cache's collectors. A nil *metrics collects nothing.
type metrics struct {
	requests      *prometheus.CounterVec // upstream, kind, result
	upstreamBytes *prometheus.CounterVec // upstream
	errors        *prometheus.CounterVec // upstream
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_proxy_requests_total",
			Help: "Requests for cached repositories, by upstream, kind (manifest, blob) and result (hit, miss, stale).",
		}, []string{"upstream", "kind", "result"}),
		upstreamBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_proxy_upstream_bytes_total",
			Help: "Manifest and blob bytes received from each upstream.",
		}, []string{"upstream"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_proxy_upstream_errors_total",
			Help: "Failed upstream requests (unreachable, 5xx, 429, refused, invalid content), by upstream.",
		}, []string{"upstream"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.upstreamBytes, m.errors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) result(upstream, kind string, r Result) {
	if m != nil {
		m.requests.WithLabelValues(upstream, kind, string(r)).Inc()
	}
}

func (m *metrics) received(upstream string, n int64) {
	if m != nil && n > 0 {
		m.upstreamBytes.WithLabelValues(upstream).Add(float64(n))
	}
}

func (m *metrics) failed(upstream string) {
	if m != nil {
		m.errors.WithLabelValues(upstream).Inc()
	}
}
