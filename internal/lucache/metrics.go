package lucache

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// metrics are the cache's counters, registered with Config.Registerer.
type metrics struct {
	hits           *prometheus.CounterVec
	fills          *prometheus.CounterVec
	fillBytes      prometheus.Counter
	refreshes      *prometheus.CounterVec
	verifyFailures *prometheus.CounterVec
	unknown        prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_lucache_hits_total", Help: "Files served from the cache directory without fetching them, by kind (metadata, target).",
		}, []string{"kind"}),
		fills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_lucache_fills_total", Help: "Target downloads from the upstream, by result (ok, present, refused, not_found, failed).",
		}, []string{"result"}),
		fillBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_lucache_fill_bytes_total", Help: "Bytes of targets received from the upstream.",
		}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_lucache_refreshes_total", Help: "Metadata refreshes from the upstream, by result (updated, unchanged, behind, failed).",
		}, []string{"result"}),
		verifyFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_lucache_verification_failures_total", Help: "Files from the upstream refused because they do not verify against the signed metadata, by kind (metadata, target).",
		}, []string{"kind"}),
		unknown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_lucache_unknown_requests_total", Help: "Requests for missing files that no kept state names: not found, never asked of the upstream.",
		}),
	}
	// Every label value exists from the start, at zero.
	for _, k := range []string{"metadata", "target"} {
		m.hits.WithLabelValues(k)
		m.verifyFailures.WithLabelValues(k)
	}
	for _, r := range []string{"ok", "present", "refused", "not_found", "failed"} {
		m.fills.WithLabelValues(r)
	}
	for _, r := range []string{"updated", "unchanged", "behind", "failed"} {
		m.refreshes.WithLabelValues(r)
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.hits, m.fills, m.fillBytes, m.refreshes, m.verifyFailures, m.unknown}
}

func (m *metrics) register(r prometheus.Registerer) error {
	var errs []error
	for _, c := range m.collectors() {
		errs = append(errs, r.Register(c))
	}
	return errors.Join(errs...)
}

// Stats are the cache's counters since New (the metrics' values).
type Stats struct {
	// Hits are files served from the directory without a fetch:
	// metadata and targets.
	MetadataHits, TargetHits int64
	// Fills are target downloads by result: complete and verified,
	// already present (a race), refused by verification, not found
	// upstream, failed otherwise; FillBytes the bytes received.
	Fills, FillsPresent, FillsRefused, FillsNotFound, FillsFailed int64
	FillBytes                                                     int64
	// Refreshes are metadata refreshes by result.
	RefreshesUpdated, RefreshesUnchanged, RefreshesBehind, RefreshesFailed int64
	// VerificationFailures count refusals: metadata (addresses whose
	// probe or session refused what they served) and targets.
	MetadataVerificationFailures, TargetVerificationFailures int64
	// Unknown counts requests for missing files that no kept state
	// names, which the upstream is never asked for.
	Unknown int64
}

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
	m := c.met
	return Stats{
		MetadataHits: value(m.hits.WithLabelValues("metadata")), TargetHits: value(m.hits.WithLabelValues("target")),
		Fills: value(m.fills.WithLabelValues("ok")), FillsPresent: value(m.fills.WithLabelValues("present")),
		FillsRefused: value(m.fills.WithLabelValues("refused")), FillsNotFound: value(m.fills.WithLabelValues("not_found")),
		FillsFailed: value(m.fills.WithLabelValues("failed")), FillBytes: value(m.fillBytes),
		RefreshesUpdated: value(m.refreshes.WithLabelValues("updated")), RefreshesUnchanged: value(m.refreshes.WithLabelValues("unchanged")),
		RefreshesBehind: value(m.refreshes.WithLabelValues("behind")), RefreshesFailed: value(m.refreshes.WithLabelValues("failed")),
		MetadataVerificationFailures: value(m.verifyFailures.WithLabelValues("metadata")),
		TargetVerificationFailures:   value(m.verifyFailures.WithLabelValues("target")),
		Unknown:                      value(m.unknown),
	}
}

// value reads a counter.
func value(c prometheus.Counter) int64 {
	var d dto.Metric
	if err := c.Write(&d); err != nil || d.Counter == nil {
		return 0
	}
	return int64(d.Counter.GetValue())
}
