package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type metrics struct {
	reg         *prometheus.Registry
	commands    prometheus.Counter
	datagrams   *prometheus.CounterVec
	sendErrors  prometheus.Counter
	enrollments prometheus.Counter
	checkins    prometheus.Counter
	// checkinsDeferred counts the check-ins acknowledged before they
	// were written (checkin.go); checkins counts the others, when stored.
	checkinsDeferred prometheus.Counter
	results          prometheus.Counter
	authFail         prometheus.Counter
	detections       prometheus.Counter
	enrollBusy       prometheus.Counter
	resultsRefused   prometheus.Counter
	epochChanges     prometheus.Counter
	relayStreams     prometheus.Gauge
	relayFrames      *prometheus.CounterVec
	storeEvents      *prometheus.CounterVec
	batchSize        *prometheus.HistogramVec
	requests         *prometheus.CounterVec
	latency          *prometheus.HistogramVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		commands: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_server_commands_issued_total", Help: "Commands appended to the command log.",
		}),
		datagrams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_server_datagrams_sent_total", Help: "Multicast datagrams sent, by kind.",
		}, []string{"kind"}),
		sendErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_server_datagram_send_errors_total", Help: "Multicast datagrams that could not be sent.",
		}),
		enrollments: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_server_enrollments_total", Help: "Agents enrolled.",
		}),
		checkins: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_server_checkins_total", Help: "Agent check-ins written to the store before they were answered (the others: vigil_server_checkins_deferred_total).",
		}),
		checkinsDeferred: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_server_checkins_deferred_total",
			Help: "Agent check-ins that changed only the last-seen time and counters, acknowledged before they were written (in the next group commit).",
		}),
		results: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_server_results_total", Help: "Command results received from agents.",
		}),
		authFail: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_server_auth_failures_total", Help: "Requests refused for a missing or wrong credential or secret.",
		}),
		detections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_server_detections_total", Help: "Infected files reported by agents' scans and on-access scanning.",
		}),
		enrollBusy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_server_enrollments_busy_total", Help: "Enrollment requests refused (503) because too many were in progress.",
		}),
		resultsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_server_results_refused_total", Help: "Results refused for good (unknown command, not targeted at the agent, malformed).",
		}),
		epochChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_server_epoch_changes_total", Help: "Moves to a new epoch after an agent reported a sequence beyond the server's.",
		}),
		relayStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_server_relay_streams", Help: "Relay streams open (GET /v1/relay/stream).",
		}),
		relayFrames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_server_relay_datagrams_sent_total", Help: "Datagrams written on relay streams, by kind.",
		}, []string{"kind"}),
		storeEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_server_store_events_total",
			Help: "Events of a shared store (PostgreSQL) this instance followed, by kind: other instances' commands, results and epoch moves, and resyncs after its listening connection came back.",
		}, []string{"kind"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vigil_server_store_batch_size", Help: "Items written per store transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}, []string{"kind"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_server_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vigil_server_http_request_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
	}
	m.reg.MustRegister(m.commands, m.datagrams, m.sendErrors, m.enrollments, m.checkins, m.checkinsDeferred,
		m.results, m.authFail, m.detections, m.enrollBusy, m.resultsRefused, m.epochChanges, m.relayStreams, m.relayFrames, m.storeEvents, m.batchSize, m.requests, m.latency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, k := range []string{"command", "beacon", "ref"} {
		m.datagrams.WithLabelValues(k) // export zeros before the first send
		m.relayFrames.WithLabelValues(k)
	}
	return m
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection's writer
// (Flush, write deadlines: the relay stream).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument wraps a handler with request counting and latency by route.
func (m *metrics) instrument(route string, h http.HandlerFunc) http.HandlerFunc {
	lat := m.latency.WithLabelValues(route)
	// The answer of nearly every request: its counter looked up once.
	ok := m.requests.WithLabelValues(route, strconv.Itoa(http.StatusOK))
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h(sw, r)
		lat.Observe(time.Since(start).Seconds())
		if sw.code == http.StatusOK {
			ok.Inc()
		} else {
			m.requests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
		}
	}
}
