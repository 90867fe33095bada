package pull

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dynia/dynia/internal/report"
)

type metrics struct {
	reg           *prometheus.Registry
	polls         prometheus.Counter
	notModified   prometheus.Counter
	pollErrors    prometheus.Counter
	applies       prometheus.Counter
	applyFailures *prometheus.CounterVec
	reloadSeconds *prometheus.HistogramVec
	generation    prometheus.Gauge
	vrrp          *prometheus.GaugeVec
	statusWrites  prometheus.Counter
	statusErrors  prometheus.Counter
	apiCalls      prometheus.Counter
}

func newMetrics(sinceLastPoll func() float64) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		polls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dynia_pull_polls_total", Help: "State object polls."}),
		notModified: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dynia_pull_polls_not_modified_total", Help: "Polls answered 304 Not Modified."}),
		pollErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dynia_pull_poll_errors_total", Help: "Polls that failed (store unreachable, denied...)."}),
		applies: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dynia_pull_applies_total", Help: "Applies that changed files on disk and reloaded."}),
		applyFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dynia_pull_apply_failures_total", Help: "Applies refused or failed, by reason."}, []string{"reason"}),
		reloadSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dynia_pull_reload_duration_seconds", Help: "Time to reload a daemon.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5}}, []string{"daemon"}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dynia_pull_applied_generation", Help: "Generation of the last applied state."}),
		vrrp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dynia_pull_vrrp_state", Help: "1 for the node's current VRRP state."}, []string{"state"}),
		statusWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dynia_pull_status_writes_total", Help: "status.json reports written."}),
		statusErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dynia_pull_status_write_errors_total", Help: "status.json reports that failed."}),
		apiCalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dynia_pull_do_api_calls_total", Help: "DigitalOcean API requests made for the Reserved IP (claims, checks, token checks; action polls excluded)."}),
	}
	m.reg.MustRegister(m.polls, m.notModified, m.pollErrors, m.applies, m.applyFailures,
		m.reloadSeconds, m.generation, m.vrrp, m.statusWrites, m.statusErrors, m.apiCalls,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dynia_pull_seconds_since_last_successful_poll",
			Help: "Seconds since the state object was last read (or found unchanged)."}, sinceLastPoll),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.setVRRP(report.VRRPUnknown)
	return m
}

func (m *metrics) setVRRP(state string) {
	for _, s := range []string{report.VRRPMaster, report.VRRPBackup, report.VRRPFault, report.VRRPUnknown} {
		v := 0.0
		if s == state {
			v = 1
		}
		m.vrrp.WithLabelValues(s).Set(v)
	}
}

// Handler serves /healthz, /metrics and /status (the current Status as JSON).
// /healthz is 200 once a first apply succeeded and the last successful poll
// is fresh (within max(10 polls, 60 s)).
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := d.healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		s := d.rep.snapshot()
		// An encode error means the client went away mid-answer; there is
		// no one left to tell.
		_ = json.NewEncoder(w).Encode(s)
	})
	return mux
}

func staleAfter(poll time.Duration) time.Duration { return max(10*poll, time.Minute) }
