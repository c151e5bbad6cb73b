package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"

	"github.com/ferry-gitops/ferry/cache"
)

// StatusKey is the key of the status ConfigMap's data that holds Status as JSON.
const StatusKey = "status.json"

// Event reasons, on the status ConfigMap.
const (
	ReasonBundleAccepted = "BundleAccepted"
	ReasonBundleRejected = "BundleRejected"
)

// eventNoteLimit is the longest note events.k8s.io/v1 accepts.
const eventNoteLimit = 1024

// Status is what the leader publishes in the ConfigMap ferry-sync-status (key status.json): the
// current bundle and the last rejections.
type Status struct {
	// Leader is the replica that wrote it; Updated when.
	Leader  string    `json:"leader"`
	Updated time.Time `json:"updated"`
	// Current is the cache's current bundle; nil before the first is accepted.
	Current *CurrentBundle `json:"current"`
	// Rejections are the last rejections (newest last), as the cache keeps them.
	Rejections []cache.Rejection `json:"rejections"`
	// Conditions are Expired (the current bundle's expiry passed) and Stalled (reconciling
	// stopped: onExpiry stop-reconcile).
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Keys are the keys bundles are verified against, with the key statements applied.
	Keys []KeyStatus `json:"keys,omitempty"`
}

// CurrentBundle describes the current bundle.
type CurrentBundle struct {
	Sequence uint64        `json:"sequence"`
	Root     digest.Digest `json:"root"`
	Created  time.Time     `json:"created"`
	Expires  time.Time     `json:"expires"`
	Accepted time.Time     `json:"accepted"`
	Items    int           `json:"items"`
}

// reporter keeps the status ConfigMap and records Events on it.
type reporter struct {
	cs        kubernetes.Interface
	namespace string
	name      string
	identity  string
	log       *slog.Logger

	broadcaster events.EventBroadcaster
	recorder    events.EventRecorder

	// agent supplies the conditions and keys (nil: none are published).
	agent *Agent

	mu sync.Mutex
	cm *corev1.ConfigMap // as last written: what Events refer to
}

func newReporter(cs kubernetes.Interface, namespace, identity string, log *slog.Logger) *reporter {
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	return &reporter{cs: cs, namespace: namespace, name: DefaultStatusConfigMap, identity: identity, log: log,
		broadcaster: b, recorder: b.NewRecorder(scheme.Scheme, "ferry-sync")}
}

// start starts sending Events until stop.
func (r *reporter) start(stop <-chan struct{}) { r.broadcaster.StartRecordingToSink(stop) }

// shutdown stops sending Events.
func (r *reporter) shutdown() { r.broadcaster.Shutdown() }

// publish writes the status from the cache into the ConfigMap, creating it if needed.
func (r *reporter) publish(ctx context.Context, c *cache.Cache) error {
	st := Status{Leader: r.identity, Updated: time.Now().UTC().Truncate(time.Second), Rejections: []cache.Rejection{}}
	rec, err := c.Current()
	if err != nil {
		return err
	}
	if rec != nil {
		st.Current = &CurrentBundle{Sequence: rec.Sequence, Root: rec.Root, Created: rec.Created, Expires: rec.Expires, Accepted: rec.Accepted, Items: len(rec.Items)}
	}
	rejs, err := c.Rejections()
	if err != nil {
		return err
	}
	if len(rejs) > defaultStatusRejections {
		rejs = rejs[len(rejs)-defaultStatusRejections:]
	}
	st.Rejections = append(st.Rejections, rejs...)
	if r.agent != nil {
		st.Conditions = r.agent.conditions(rec)
		if st.Keys, err = TrustedKeys(&r.agent.cfg, c); err != nil {
			r.log.Warn("cannot list the trusted keys in the status", "err", err) // the rest is published all the same
		}
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cms := r.cs.CoreV1().ConfigMaps(r.namespace)
		cm, err := cms.Get(ctx, r.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: r.name, Namespace: r.namespace,
				Labels: map[string]string{"app.kubernetes.io/name": "ferry", "app.kubernetes.io/component": "sync"}},
				Data: map[string]string{StatusKey: string(data)}}
			created, cerr := cms.Create(ctx, cm, metav1.CreateOptions{})
			if apierrors.IsNotFound(cerr) {
				// The agent's namespace is missing (installed by hand, not with 'sync install'):
				// make it, as the bundle objects' inventory does, rather than report nothing.
				ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.namespace}}
				if _, nerr := r.cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); nerr != nil && !apierrors.IsAlreadyExists(nerr) {
					return fmt.Errorf("create namespace %s: %w", r.namespace, nerr)
				}
				created, cerr = cms.Create(ctx, cm, metav1.CreateOptions{})
			}
			cm, err = created, cerr
		} else if err == nil {
			if cm.Data == nil {
				cm.Data = map[string]string{}
			}
			cm.Data[StatusKey] = string(data)
			cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		}
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.cm = cm
		r.mu.Unlock()
		return nil
	})
	if err != nil {
		return fmt.Errorf("status ConfigMap %s/%s: %w", r.namespace, r.name, err)
	}
	return nil
}

// event records an Event on the status ConfigMap (once it exists: publish first).
func (r *reporter) event(typ, reason, note string) {
	r.mu.Lock()
	cm := r.cm
	r.mu.Unlock()
	if cm == nil {
		r.log.Warn("no status ConfigMap to record an Event on", "reason", reason, "note", note)
		return
	}
	if len(note) > eventNoteLimit {
		note = strings.ToValidUTF8(note[:eventNoteLimit-len("…")], "") + "…" // cut on a character
	}
	r.recorder.Eventf(cm, nil, typ, reason, "Import", "%s", note)
}
