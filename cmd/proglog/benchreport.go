package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Range of the latency histogram, in microseconds: 1 µs to 5 minutes, three
// significant digits. Slower calls are recorded as the maximum.
const (
	histogramMinMicros = 1
	histogramMaxMicros = int64(5 * time.Minute / time.Microsecond)
	histogramSigFigs   = 3
)

// latencyHistogram records call latencies of one caller; merge them at the
// end (an HDR histogram is not safe for concurrent use).
type latencyHistogram struct {
	h *hdrhistogram.Histogram
}

func newLatencyHistogram() *latencyHistogram {
	return &latencyHistogram{h: hdrhistogram.New(histogramMinMicros, histogramMaxMicros, histogramSigFigs)}
}

// record adds one latency.
func (l *latencyHistogram) record(d time.Duration) {
	micros := min(max(d.Microseconds(), histogramMinMicros), histogramMaxMicros)
	// In range by construction, so RecordValue cannot fail.
	_ = l.h.RecordValue(micros)
}

// merge adds other's latencies to l.
func (l *latencyHistogram) merge(other *latencyHistogram) {
	l.h.Merge(other.h)
}

// quantileMS is the latency at quantile q (0-100) in milliseconds.
func (l *latencyHistogram) quantileMS(q float64) float64 {
	return float64(l.h.ValueAtQuantile(q)) / 1000
}

// benchResult is the report of `proglog bench`; its JSON is the --json
// output.
type benchResult struct {
	Mode          string      `json:"mode"`
	Records       int64       `json:"records"`
	Errors        int64       `json:"errors"`
	Seconds       float64     `json:"seconds"`
	RecordsPerSec float64     `json:"records_per_sec"`
	MBPerSec      float64     `json:"mb_per_sec"`
	LatencyMS     latencyJSON `json:"latency_ms"`
}

// latencyJSON holds latency percentiles in milliseconds.
type latencyJSON struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// newBenchResult computes the report of a run that did records records of
// size bytes and failed errors in elapsed.
func newBenchResult(mode string, records, errors int64, elapsed time.Duration, size int, h *latencyHistogram) benchResult {
	seconds := elapsed.Seconds()
	r := benchResult{Mode: mode, Records: records, Errors: errors, Seconds: seconds}
	if seconds > 0 {
		r.RecordsPerSec = float64(records) / seconds
		r.MBPerSec = float64(records) * float64(size) / 1e6 / seconds
	}
	if h.h.TotalCount() > 0 {
		r.LatencyMS = latencyJSON{
			P50:  h.quantileMS(50),
			P90:  h.quantileMS(90),
			P99:  h.quantileMS(99),
			P999: h.quantileMS(99.9),
			Max:  float64(h.h.Max()) / 1000,
		}
	}
	return r
}

// writeJSON prints r as one JSON object on a line.
func (r benchResult) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	return enc.Encode(r)
}

// writeText prints r for people.
func (r benchResult) writeText(w io.Writer, bs benchSettings) error {
	per := "call"
	mode := r.Mode
	if bs.noCoalesce {
		mode += " (no coalescing: one RPC per call)"
	}
	switch bs.mode {
	case benchBatch:
		per = fmt.Sprintf("ProduceBatch call of %d records", bs.batch)
	case benchStream:
		per = "record, send to answer"
	}
	_, err := fmt.Fprintf(w, `mode %s: %d records of %d bytes, %d concurrent
  %d records, %d errors in %.3f s
  %.0f records/s, %.2f MB/s
  latency per %s (ms): p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f
`,
		mode, bs.records, bs.size, bs.concurrency,
		r.Records, r.Errors, r.Seconds,
		r.RecordsPerSec, r.MBPerSec,
		per, r.LatencyMS.P50, r.LatencyMS.P90, r.LatencyMS.P99, r.LatencyMS.P999, r.LatencyMS.Max)
	return err
}

// progressInterval is how often the progress bar is redrawn.
const progressInterval = 200 * time.Millisecond

// progressBar redraws a bar on a terminal until stopped.
type progressBar struct {
	stopCh chan struct{}
	wg     sync.WaitGroup
}

// startProgress draws a bar of done() out of total on w every
// progressInterval until stop is called.
func startProgress(w io.Writer, total int64, done func() int64) *progressBar {
	p := &progressBar{stopCh: make(chan struct{})}
	start := time.Now()
	p.wg.Go(func() {
		ticker := time.NewTicker(progressInterval)
		defer ticker.Stop()
		for {
			select {
			case <-p.stopCh:
				fmt.Fprint(w, "\r\033[K") // erase the bar
				return
			case <-ticker.C:
				fmt.Fprint(w, "\r"+progressLine(done(), total, time.Since(start))+"\033[K")
			}
		}
	})
	return p
}

// stop erases the bar and waits for its goroutine. A nil bar does nothing.
func (p *progressBar) stop() {
	if p == nil {
		return
	}
	close(p.stopCh)
	p.wg.Wait()
}

// progressLine is the text of the bar.
func progressLine(done, total int64, elapsed time.Duration) string {
	const width = 30
	filled := 0
	if total > 0 {
		filled = int(min(done, total) * width / total)
	}
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	return fmt.Sprintf("[%s%s] %d/%d records  %.0f/s",
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), done, total, rate)
}
