package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/serve"
	"github.com/ferry-gitops/ferry/verify"
)

// Options are what a configuration file does not say: wiring and clocks.
type Options struct {
	// Logger receives the agent's structured log; nil: JSON to standard error.
	Logger *slog.Logger
	// Now is the clock bundles are verified against (nil: time.Now).
	Now func() time.Time
	// Identity names this replica in leader election and in the status; default: $POD_NAME,
	// else the host name and a random suffix.
	Identity string
	// RestConfig reaches the API server; nil: Config.Kubeconfig, or the in-cluster credentials.
	RestConfig *rest.Config
	// LeaseDuration, RenewDeadline and RetryPeriod time leader election (default 15s, 10s, 2s).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Version is the running agent's own version (sync run passes its build's): a bundle
	// carrying an older Ferry agent image is refused (check agent-rollback). Ignored unless it
	// is valid semver.
	Version string
}

// Agent is `sync run`: it watches its sources, imports new bundles in sequence order, serves the
// cache, reconciles the cluster from it, and reports what it did.
type Agent struct {
	cfg       Config
	o         Options
	log       *slog.Logger
	policy    verify.Policy
	protect   serve.Options
	sources   []*source
	restCfg   *rest.Config
	cs        kubernetes.Interface
	namespace string
	identity  string
	metrics   *metrics
	ready     *readiness

	serveL, healthL net.Listener
	ran             atomic.Bool
}

// New checks cfg, loads the pinned keys and the served registry's credentials (serve.htpasswd,
// serve.bearerTokens), prepares the clients of the sources and the API server (none of which
// makes a request yet) and opens the listeners. Run serves them.
func New(cfg Config, o Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration = 15 * time.Second
	}
	if o.RenewDeadline == 0 {
		o.RenewDeadline = 10 * time.Second
	}
	if o.RetryPeriod == 0 {
		o.RetryPeriod = 2 * time.Second
	}
	a := &Agent{cfg: cfg, o: o, log: log, metrics: newMetrics(), ready: newReadiness()}
	var err error
	if a.policy, err = cfg.Policy(o.Now); err != nil {
		return nil, err
	}
	a.policy.AgentFloor = o.Version
	if a.protect, err = cfg.ServeOptions(); err != nil {
		return nil, err
	}
	a.protect.Logger = log
	for i, s := range cfg.Sources {
		src, err := newSource(i, s)
		if err != nil {
			return nil, err
		}
		a.sources = append(a.sources, src)
	}
	if a.restCfg = o.RestConfig; a.restCfg == nil {
		if a.restCfg, err = restConfig(cfg.Kubeconfig); err != nil {
			return nil, err
		}
	}
	if a.cs, err = kubernetes.NewForConfig(a.restCfg); err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	a.namespace = os.Getenv("POD_NAMESPACE")
	if a.namespace == "" {
		a.namespace = cfg.LeaderElection.Namespace
	}
	if a.identity = o.Identity; a.identity == "" {
		a.identity = defaultIdentity()
	}
	if a.serveL, err = net.Listen("tcp", cfg.Serve.Listen); err != nil {
		return nil, fmt.Errorf("serve.listen: %w", err)
	}
	if a.healthL, err = net.Listen("tcp", cfg.Health.Listen); err != nil {
		a.serveL.Close()
		return nil, fmt.Errorf("health.listen: %w", err)
	}
	return a, nil
}

// restConfig reads a kubeconfig file, or the in-cluster credentials without one.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kubeconfig: none given and not in a cluster: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}

// defaultIdentity is $POD_NAME (unique in its namespace), else the host name and a random suffix.
func defaultIdentity() string {
	if p := os.Getenv("POD_NAME"); p != "" {
		return p
	}
	host, _ := os.Hostname() // uname: no lookup
	b := make([]byte, 4)
	rand.Read(b)
	return host + "_" + hex.EncodeToString(b)
}

// ServeAddr is the address the registry and Git remote listen on.
func (a *Agent) ServeAddr() net.Addr { return a.serveL.Addr() }

// HealthAddr is the address /healthz, /readyz and /metrics listen on.
func (a *Agent) HealthAddr() net.Addr { return a.healthL.Addr() }

// Identity is the replica's name in leader election.
func (a *Agent) Identity() string { return a.identity }

// Run runs the agent until ctx is done, then stops everything cleanly: the leader's work first
// (an import in flight is abandoned, and leaves the cache as it was), then the lease is
// released, then the listeners shut down. It returns nil after a clean stop, or the error that
// stopped it (a listener failing).
func (a *Agent) Run(ctx context.Context) error {
	if !a.ran.CompareAndSwap(false, true) {
		return errors.New("agent: Run was already called")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	fatal := func(err error) {
		select {
		case errc <- err:
		default:
		}
		cancel()
	}
	result := func() error {
		select {
		case err := <-errc:
			return err
		default:
			return nil
		}
	}
	a.log.Info("sync run starting", "identity", a.identity, "cache", a.cfg.Cache, "sources", a.sourceNames(),
		"serve", a.serveL.Addr().String(), "health", a.healthL.Addr().String(), "leaderElection", a.cfg.LeaderElection.Enabled)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := serve.ServeHTTP(ctx, a.healthL, a.healthHandler(), "", ""); err != nil {
			fatal(fmt.Errorf("health listener: %w", err))
		}
	}()
	reader, err := a.openReader(ctx)
	if err != nil {
		a.serveL.Close()
		cancel()
		wg.Wait()
		return result()
	}
	srv, err := serve.NewServer(ctx, reader, serve.ServerOptions{Options: a.protect,
		TLSCert: a.cfg.Serve.TLSCert, TLSKey: a.cfg.Serve.TLSKey, GitWorkDir: a.cfg.Serve.GitWorkDir,
		GitLimits: a.cfg.Serve.Git.limits()})
	if err != nil {
		a.serveL.Close()
		fatal(fmt.Errorf("serve: %w", err))
		wg.Wait()
		return result()
	}
	defer srv.Close() // after wg.Wait: removes the Git work directory once nothing serves
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ctx, a.serveL); err != nil {
			fatal(fmt.Errorf("serve listener: %w", err))
		}
	}()
	a.ready.update(func(r *readiness) { r.serving = true })
	go func() {
		defer wg.Done()
		srv.Watch(ctx, a.cfg.Intervals.Poll.Duration) // picks up what another replica imported
	}()
	go func() {
		defer wg.Done()
		a.observe(ctx, reader)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if a.cfg.LeaderElection.Enabled {
			if err := a.elect(ctx, srv); err != nil {
				fatal(err)
			}
		} else {
			a.lead(ctx, srv)
		}
	}()
	<-ctx.Done()
	wg.Wait()
	a.log.Info("sync run stopped")
	return result()
}

func (a *Agent) sourceNames() []string {
	var out []string
	for _, s := range a.sources {
		out = append(out, s.String())
	}
	return out
}

// sleep waits d, or until ctx is done (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// openReader opens the cache for serving, retrying with backoff until it can. A cache is made
// by its writer; it is made here (and closed at once) when no writer holds it, so that every
// replica can serve it from the start.
func (a *Agent) openReader(ctx context.Context) (*cache.Cache, error) {
	b := newBackoff(a.cfg.Intervals.RetryMin.Duration, a.cfg.Intervals.RetryMax.Duration)
	for {
		c, err := func() (*cache.Cache, error) {
			if w, err := cache.Open(a.cfg.Cache); err == nil {
				w.Close()
			} else if !errors.Is(err, syscall.EWOULDBLOCK) { // held: the leader made it
				return nil, err
			}
			return cache.OpenReader(a.cfg.Cache)
		}()
		if err == nil {
			a.ready.update(func(r *readiness) { r.cache = "" })
			return c, nil
		}
		d := b.fail("cache")
		a.ready.update(func(r *readiness) { r.cache = err.Error() })
		a.log.Error("cannot open the cache; retrying", "cache", a.cfg.Cache, "err", err, "retryIn", d.String())
		if !sleep(ctx, d) {
			return nil, ctx.Err()
		}
	}
}

// openWriter takes the cache's writer lock, retrying with backoff while another process (a
// previous leader still stopping, a 'sync import') holds it.
func (a *Agent) openWriter(ctx context.Context) (*cache.Cache, error) {
	b := newBackoff(a.cfg.Intervals.RetryMin.Duration, a.cfg.Intervals.RetryMax.Duration)
	for {
		c, err := cache.Open(a.cfg.Cache)
		if err == nil {
			return c, nil
		}
		d := b.fail("cache")
		a.log.Warn("cannot take the cache's writer lock; retrying", "cache", a.cfg.Cache, "err", err, "retryIn", d.String())
		if !sleep(ctx, d) {
			return nil, ctx.Err()
		}
	}
}

// observe keeps ferry_current_bundle_sequence and the expiry metrics and warning, on every
// replica.
func (a *Agent) observe(ctx context.Context, c *cache.Cache) {
	for {
		if st, err := c.State(); err == nil {
			a.metrics.sequence.Set(float64(st.Sequence))
		}
		a.observeExpiry(c)
		if !sleep(ctx, a.cfg.Intervals.Poll.Duration) {
			return
		}
	}
}

// elect stands for leadership until ctx is done, leading whenever elected. The lease is
// released only after the leader's work has stopped: nothing it guards runs past the release.
func (a *Agent) elect(ctx context.Context, srv *serve.Server) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: a.cfg.LeaderElection.Namespace, Name: a.cfg.LeaderElection.Name},
		Client:     a.cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: a.identity},
	}
	for ctx.Err() == nil {
		var mu sync.Mutex
		var workDone chan struct{}
		waitWork := func() {
			mu.Lock()
			d := workDone
			mu.Unlock()
			if d != nil {
				<-d
			}
		}
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			Name:            a.cfg.LeaderElection.Name,
			LeaseDuration:   a.o.LeaseDuration,
			RenewDeadline:   a.o.RenewDeadline,
			RetryPeriod:     a.o.RetryPeriod,
			ReleaseOnCancel: true,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					done := make(chan struct{})
					mu.Lock()
					workDone = done
					mu.Unlock()
					defer close(done)
					// The work stops when leadership is lost (lctx) or the agent stops (ctx).
					wctx, stop := context.WithCancel(lctx)
					defer stop()
					defer context.AfterFunc(ctx, stop)()
					a.lead(wctx, srv)
				},
				OnStoppedLeading: func() {
					a.log.Info("leadership ended", "identity", a.identity, "lease", a.cfg.LeaderElection.Namespace+"/"+a.cfg.LeaderElection.Name)
				},
				OnNewLeader: func(id string) {
					a.log.Info("leader elected", "leader", id, "self", id == a.identity)
				},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		electCtx, stopElection := context.WithCancel(context.Background())
		go func() {
			select {
			case <-ctx.Done():
				waitWork()
				stopElection() // releases the lease
			case <-electCtx.Done():
			}
		}()
		le.Run(electCtx) // returns when leadership is lost, or the election is stopped
		waitWork()
		stopElection()
		if ctx.Err() == nil {
			a.log.Warn("lost leadership; standing again", "identity", a.identity)
			sleep(ctx, a.o.RetryPeriod)
		}
	}
	return nil
}
