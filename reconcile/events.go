package reconcile

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
)

// EventComponent is the reporting controller of the Events the reconciler records.
const EventComponent = "ferry"

// eventAction is the action of every Event the reconciler records.
const eventAction = "Reconcile"

// eventNoteLimit bounds an Event's note (the API server refuses notes over 1 kB).
const eventNoteLimit = 1000

// newEventRecorder returns a broadcaster that writes events.k8s.io/v1 Events through cfg, and
// a recorder reporting as EventComponent.
func newEventRecorder(cfg *rest.Config, s *runtime.Scheme) (events.EventBroadcaster, events.EventRecorder, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	b.StartRecordingToSink(make(chan struct{}))
	return b, b.NewRecorder(s, EventComponent), nil
}

// recordEvent records an Event on obj for a reconciliation's outcome: Normal with the
// success reason and note, or Warning with the failure's reason and message.
func (r *Reconciler) recordEvent(obj runtime.Object, out outcome) {
	typ, note := "Normal", out.message
	if out.ready && out.event != "" {
		note = out.event
	}
	if !out.ready {
		typ = "Warning"
	}
	r.events.Eventf(obj, nil, typ, out.reason, eventAction, "%s", truncate(note, eventNoteLimit))
}

// Close stops recording Events. Events of the reconciliations just done may still be on their
// way to the API server when it returns.
func (r *Reconciler) Close() {
	r.sched.wait()
	r.broadcaster.Shutdown()
}
