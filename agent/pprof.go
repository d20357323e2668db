package agent

import (
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"go.uber.org/zap"
)

// The profiling listener (Config.PprofAddr): Go's net/http/pprof handlers on
// a listener of their own, plain HTTP and without authentication, so an
// operator can take a CPU profile or an execution trace of a running node
// (`go tool pprof http://ADDR/debug/pprof/profile`) the way etcd's
// --enable-pprof and nats-server's prof_port allow. It is separate from the
// HTTPS port because that port's client certificates and ACL would keep
// `go tool pprof` out, and off by default because profiles reveal memory
// contents (record values among them).

// startPprof listens on cfg.PprofAddr when it is set and serves the profiling
// handlers until Shutdown closes the listener.
func (a *Agent) startPprof() error {
	if a.cfg.PprofAddr == "" {
		return nil
	}
	l, err := net.Listen("tcp", a.cfg.PprofAddr)
	if err != nil {
		return err
	}
	if host, _, err := net.SplitHostPort(l.Addr().String()); err == nil {
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			a.logger.Warn("the profiling listener is plain HTTP without authentication and is reachable beyond this host",
				zap.String("pprof_addr", l.Addr().String()))
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: zap.NewStdLog(a.logger.Named("pprof"))}
	a.pprofListener, a.pprofServer = l, srv
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) && !isClosedErr(err) {
			a.logger.Error("profiling server stopped", zap.Error(err))
		}
	}()
	a.logger.Info("serving profiles", zap.String("pprof_addr", l.Addr().String()))
	return nil
}

// stopPprof closes the profiling listener and its connections: a CPU
// profile or trace being taken is cut short rather than holding Shutdown up
// for its duration.
func (a *Agent) stopPprof() error {
	if a.pprofServer == nil {
		return nil
	}
	return a.pprofServer.Close()
}

// PprofAddr is the address of the profiling listener, "" when
// Config.PprofAddr is not set.
func (a *Agent) PprofAddr() string {
	if a.pprofListener == nil {
		return ""
	}
	return a.pprofListener.Addr().String()
}
