package relay

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// metrics are the relay's Prometheus metrics.
type metrics struct {
	connected      prometheus.Gauge
	reconnects     prometheus.Counter
	relayed        *prometheus.CounterVec
	dropped        *prometheus.CounterVec
	lastSeq        prometheus.Gauge
	lag            prometheus.Gauge
	sendErrors     prometheus.Counter
	repeatsSkipped prometheus.Counter
	answered       prometheus.Counter
	answersDropped prometheus.Counter
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_relay_stream_connected", Help: "1 while the relay's stream from the server is open.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_relay_stream_reconnects_total", Help: "Times the relay's stream ended and was opened again.",
		}),
		relayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_relay_datagrams_relayed_total", Help: "Datagrams multicast, repeats included, by kind (sends made; vigil_relay_send_errors_total counts those that failed).",
		}, []string{"kind"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_relay_datagrams_dropped_total", Help: "Datagrams of the stream not multicast, by reason (malformed, wrong_key, bad_signature, expired, old_epoch, epoch_statement).",
		}, []string{"reason"}),
		lastSeq: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_relay_last_seq", Help: "Highest command sequence relayed in the relay's epoch.",
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_relay_stream_lag_seconds", Help: "Age of the last datagram of the stream when it reached the relay (now minus its issue time).",
		}),
		sendErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_relay_send_errors_total", Help: "Multicast sends that failed.",
		}),
		repeatsSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_relay_repeats_skipped_total", Help: "Datagrams sent once only because too many repeats were pending.",
		}),
		answered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_relay_commands_answered_total", Help: "Commands targeting the relay answered \"unsupported\" and accepted by the server.",
		}),
		answersDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_relay_answers_dropped_total", Help: "Commands targeting the relay left unanswered because too many were waiting.",
		}),
	}
	reg.MustRegister(m.connected, m.reconnects, m.relayed, m.dropped, m.lastSeq, m.lag, m.sendErrors, m.repeatsSkipped, m.answered, m.answersDropped)
	for _, r := range []string{DropMalformed, DropWrongKey, DropBadSig, DropExpired, DropOldEpoch, DropStatement} {
		m.dropped.WithLabelValues(r)
	}
	return m
}

// counters are the figures the relay reports at check-in, by name.
func (m *metrics) counters() map[string]uint64 {
	out := map[string]uint64{}
	add := func(name string, c prometheus.Collector) {
		ch := make(chan prometheus.Metric, 16)
		go func() { c.Collect(ch); close(ch) }()
		for x := range ch {
			var d dto.Metric
			if x.Write(&d) != nil || d.Counter == nil {
				continue
			}
			n := name
			for _, l := range d.Label {
				n += "_" + l.GetValue()
			}
			if v := uint64(d.Counter.GetValue()); v > 0 {
				out[n] = v
			}
		}
	}
	add("relayed", m.relayed)
	add("dropped", m.dropped)
	add("reconnects", m.reconnects)
	add("answered", m.answered)
	return out
}
