package onaccess

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metrics are the vigil_onaccess_* metrics. A Guard makes its own unless
// Config.Metrics gives it a set, which outlives it: the agent keeps one
// across the Guards it starts and stops (on-access turned off and on, its
// mode changed), so that its counters only grow.
type Metrics struct{ m *metrics }

// NewMetrics returns a set of metrics, registered on r when r is not nil
// (all of them, or none and the error).
func NewMetrics(r prometheus.Registerer) (*Metrics, error) {
	m := newMetrics()
	if r != nil {
		if err := m.register(r); err != nil {
			return nil, err
		}
	}
	return &Metrics{m}, nil
}

// Register registers every metric of x on r, or none.
func (x *Metrics) Register(r prometheus.Registerer) error { return x.m.register(r) }

// AddLost counts n events the platform lost (fanotify's queue overflowed):
// accesses not scanned.
func (x *Metrics) AddLost(n int) { x.m.lost.Add(float64(n)) }

// AddOutside counts n accesses on a watched filesystem outside the trees
// watched, allowed at once by the platform.
func (x *Metrics) AddOutside(n int) { x.m.outside.Add(float64(n)) }

// Counters returns the main counters, as the agent reports them at
// check-in: onaccess_events (every kind), onaccess_cache_hits,
// onaccess_scans (cache misses), onaccess_fail_opens,
// onaccess_detections, onaccess_denied, onaccess_queue_full,
// onaccess_errors, onaccess_lost. Zeros are left out.
func (x *Metrics) Counters() map[string]uint64 {
	m := x.m
	out := map[string]uint64{}
	put := func(name string, c prometheus.Collector) {
		ch := make(chan prometheus.Metric, 8)
		go func() { c.Collect(ch); close(ch) }()
		var sum float64
		for mt := range ch {
			var d dto.Metric
			if mt.Write(&d) == nil && d.Counter != nil {
				sum += d.Counter.GetValue()
			}
		}
		if sum > 0 {
			out[name] = uint64(sum)
		}
	}
	put("onaccess_events", m.events)
	put("onaccess_cache_hits", m.hits)
	put("onaccess_scans", m.misses)
	put("onaccess_fail_opens", m.failOpens)
	put("onaccess_detections", m.detections)
	put("onaccess_denied", m.denied)
	put("onaccess_queue_full", m.queueFull)
	put("onaccess_errors", m.errors)
	put("onaccess_lost", m.lost)
	return out
}

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
	lost       prometheus.Counter
	outside    prometheus.Counter
	entries    prometheus.GaugeFunc
	// cacheLen is the running Guard's cache size, for entries.
	cacheLen atomic.Pointer[func() int]
}

func newMetrics() *metrics {
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
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_onaccess_lost_total", Help: "Events the kernel dropped when its queue overflowed: accesses not scanned.",
		}),
		outside: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_onaccess_outside_total", Help: "Accesses on a watched filesystem outside the trees watched, allowed at once.",
		}),
	}
	m.entries = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vigil_onaccess_cache_entries", Help: "Entries in the verdict cache of the running guard.",
	}, func() float64 {
		if f := m.cacheLen.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
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
		m.oversize, m.detections, m.denied, m.errors, m.shutdown, m.lost, m.outside, m.entries,
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
