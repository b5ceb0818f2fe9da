package onaccess

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	events     *prometheus.CounterVec
	hits       prometheus.Counter
	misses     prometheus.Counter
	coalesced  prometheus.Counter
	latency    *prometheus.HistogramVec
	failOpens  prometheus.Counter
	queueFull  prometheus.Counter
	excluded   prometheus.Counter
	oversize   prometheus.Counter
	detections prometheus.Counter
	denied     prometheus.Counter
	errors     prometheus.Counter
	shutdown   prometheus.Counter
	entries    prometheus.GaugeFunc
}

func newMetrics(entries func() float64) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_onaccess_events_total", Help: "Accesses submitted, by kind (open, exec, close_write).",
		}, []string{"kind"}),
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_onaccess_cache_hits_total", Help: "Opens and execs answered from the verdict cache.",
		}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_onaccess_cache_misses_total", Help: "Opens and execs whose verdict was not in the cache (scanned, or waiting for a scan of the same file: see coalesced).",
		}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_onaccess_coalesced_total", Help: "Cache misses answered by a scan of the same file already in progress.",
		}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vigil_onaccess_verdict_seconds", Help: "Time from an access's submission to its verdict, by source (cache, scan); late verdicts included.",
			Buckets: []float64{.00001, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"source"}),
		failOpens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_onaccess_fail_opens_total", Help: "Permission requests allowed because their verdict was not ready within the verdict timeout.",
		}),
		queueFull: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_onaccess_queue_full_total", Help: "Accesses allowed unscanned because the queue was full.",
		}),
		excluded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_onaccess_excluded_total", Help: "Accesses allowed unscanned because their path or process is excluded.",
		}),
		oversize: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_onaccess_oversize_total", Help: "Accesses allowed unscanned because the file is larger than the maximum size.",
		}),
		detections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_onaccess_detections_total", Help: "Accesses to infected files (blocked or not).",
		}),
		denied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_onaccess_denied_total", Help: "Permission requests denied (infected files, block mode).",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_onaccess_errors_total", Help: "Accesses allowed because the file could not be opened, stated or scanned.",
		}),
		shutdown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_onaccess_shutdown_allows_total", Help: "Permission requests allowed unscanned because the on-access guard was closing.",
		}),
		entries: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vigil_onaccess_cache_entries", Help: "Entries in the verdict cache.",
		}, entries),
	}
	for _, k := range Kinds {
		m.events.WithLabelValues(k.String()) // export zeros before the first event
	}
	for _, s := range []string{"cache", "scan"} {
		m.latency.WithLabelValues(s)
	}
	return m
}

// register registers every metric on r, or none.
func (m *metrics) register(r prometheus.Registerer) error {
	cs := []prometheus.Collector{
		m.events, m.hits, m.misses, m.coalesced, m.latency, m.failOpens, m.queueFull, m.excluded,
		m.oversize, m.detections, m.denied, m.errors, m.shutdown, m.entries,
	}
	for i, c := range cs {
		if err := r.Register(c); err != nil {
			for _, done := range cs[:i] {
				r.Unregister(done)
			}
			return err
		}
	}
	return nil
}
