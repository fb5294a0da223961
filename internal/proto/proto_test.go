package proto

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		kind Kind
		in   any
		out  func() any
	}{
		{"client", KindClient, &ClientRequest{ClientID: 7, Seq: 9, Op: OpCAS, Key: []byte("k"), Value: []byte("v"),
			Compare: CompareModRevision, Revision: 12}, func() any { return &ClientRequest{} }},
		{"response", KindClient, &ClientResponse{Code: CodeNotLeader, LeaderAddr: "127.0.0.1:7701",
			KVs: []KeyValue{{Key: []byte("a"), Value: []byte("b"), ModRevision: 3, Version: 1}}}, func() any { return &ClientResponse{} }},
		{"range page", KindClient, &ClientRequest{Op: OpRange, Key: []byte("p/"), Prefix: true, Limit: 7, Revision: 42,
			After: []byte("p/\x00last"), MaxBytes: 64 << 10}, func() any { return &ClientRequest{} }},
		{"range page reply", KindClient, &ClientResponse{Revision: 42, More: true,
			KVs: []KeyValue{{Key: []byte("p/a"), Value: []byte("1"), CreateRevision: 2, ModRevision: 3, Version: 2}}}, func() any { return &ClientResponse{} }},
		{"join", KindJoin, &JoinRequest{Name: "n1", Addr: "127.0.0.1:7701", NodeID: 42}, func() any { return &JoinRequest{} }},
		{"report", KindLeaderReport, &LeaderReport{ID: 1, Term: 3, Members: []Member{{ID: 2, Name: "n2", Learner: true, Match: 5}}},
			func() any { return &LeaderReport{} }},
		{"admin", KindAdmin, &AdminResponse{Code: CodeOK, Status: &NodeStatus{Name: "n1", Term: 4}}, func() any { return &AdminResponse{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Encode(tt.kind, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			k, body, err := Split(b)
			if err != nil || k != tt.kind {
				t.Fatalf("Split = %v, %v; want kind %v", k, err, tt.kind)
			}
			got := tt.out()
			if err := Decode(body, got); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.in, got); d != "" {
				t.Fatalf("round trip (-want +got):\n%s", d)
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	if _, _, err := Split(nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Split(nil) = %v, want ErrMalformed", err)
	}
	// A bin32 header claiming 4 GiB with nothing behind it.
	var r ClientRequest
	if err := Decode([]byte{0x81, 0xa1, 'k', 0xc6, 0xff, 0xff, 0xff, 0xff}, &r); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Decode(forged) = %v, want ErrMalformed", err)
	}
}

func FuzzDecodeClientRequest(f *testing.F) {
	f.Add(MustEncode(KindClient, &ClientRequest{ClientID: 1, Seq: 2, Op: OpPut, Key: []byte("k"), Value: []byte("v")}))
	f.Add(MustEncode(KindJoin, &JoinRequest{Name: "n1", Addr: "127.0.0.1:1"}))
	f.Add([]byte{byte(KindClient), 0xdd, 0xff, 0xff, 0xff, 0xff})
	// A later page of a range, and its reply (ClientResponse by default).
	f.Add(MustEncode(KindClient, &ClientRequest{Op: OpRange, Key: []byte("p/"), Prefix: true, Revision: 9,
		After: []byte("p/k"), MaxBytes: 1 << 20, Limit: 3}))
	f.Add(MustEncode(KindLeaderReport+100, &ClientResponse{Revision: 9, More: true,
		KVs: []KeyValue{{Key: []byte("p/l"), Value: []byte("v"), CreateRevision: 1, ModRevision: 9, Version: 4}}}))
	f.Fuzz(func(t *testing.T, p []byte) {
		k, body, err := Split(p)
		if err != nil {
			return
		}
		var targets = map[Kind]func() any{
			KindClient: func() any { return &ClientRequest{} }, KindJoin: func() any { return &JoinRequest{} },
			KindAdmin: func() any { return &AdminRequest{} }, KindLeaderReport: func() any { return &LeaderReport{} },
		}
		mk, ok := targets[k]
		if !ok {
			mk = func() any { return &ClientResponse{} }
		}
		v := mk()
		if err := Decode(body, v); err != nil {
			return
		}
		// Whatever decoded must re-encode.
		if _, err := Encode(k, v); err != nil {
			t.Fatalf("re-encode of decoded %T: %v", v, err)
		}
	})
}

// The Nonce fields appended to Discover and EntranceBeacon keep both
// directions decoding: an old peer's bytes decode with Nonce 0, and an
// old peer's struct (without Nonce) decodes the new bytes.
func TestDiscoveryNonceAppended(t *testing.T) {
	type oldDiscover struct {
		Name string `msgpack:"n"`
	}
	type oldBeacon struct {
		Addr string `msgpack:"a"`
	}
	var d Discover
	if err := Decode(MustEncode(KindDiscover, oldDiscover{Name: "n1"})[1:], &d); err != nil || d != (Discover{Name: "n1"}) {
		t.Fatalf("old Discover bytes: %+v, %v", d, err)
	}
	var b EntranceBeacon
	if err := Decode(MustEncode(KindEntranceBeacon, oldBeacon{Addr: "10.0.0.1:7700"})[1:], &b); err != nil || b != (EntranceBeacon{Addr: "10.0.0.1:7700"}) {
		t.Fatalf("old beacon bytes: %+v, %v", b, err)
	}
	var od oldDiscover
	if err := Decode(MustEncode(KindDiscover, Discover{Name: "n1", Nonce: 1<<64 - 1})[1:], &od); err != nil || od.Name != "n1" {
		t.Fatalf("new Discover into the old struct: %+v, %v", od, err)
	}
	var ob oldBeacon
	if err := Decode(MustEncode(KindEntranceBeacon, EntranceBeacon{Addr: "10.0.0.1:7700", Nonce: 7})[1:], &ob); err != nil || ob.Addr != "10.0.0.1:7700" {
		t.Fatalf("new beacon into the old struct: %+v, %v", ob, err)
	}
}

// The paging fields appended to ClientRequest keep both directions
// decoding: a request without them encodes as before (omitempty) and
// decodes with After nil (no continuation) and MaxBytes 0 (the node's
// budget); a node that predates them decodes a later page's request and
// ignores them.
func TestRangePagingFieldsAppended(t *testing.T) {
	type oldRequest struct {
		Op     Op     `msgpack:"o"`
		Key    []byte `msgpack:"k"`
		Prefix bool   `msgpack:"p"`
		Limit  int64  `msgpack:"l"`
	}
	var r ClientRequest
	if err := Decode(MustEncode(KindClient, oldRequest{Op: OpRange, Key: []byte("p/"), Prefix: true, Limit: 5})[1:], &r); err != nil ||
		r.After != nil || r.MaxBytes != 0 || r.Limit != 5 {
		t.Fatalf("old request bytes: %+v, %v", r, err)
	}
	var or oldRequest
	if err := Decode(MustEncode(KindClient, ClientRequest{Op: OpRange, Key: []byte("p/"), Prefix: true, After: []byte("p/x"), MaxBytes: 9})[1:], &or); err != nil ||
		string(or.Key) != "p/" || !or.Prefix {
		t.Fatalf("new request into the old struct: %+v, %v", or, err)
	}
	plain := MustEncode(KindClient, ClientRequest{Op: OpGet, Key: []byte("k")})
	if bytes.Contains(plain, []byte("\xa2af")) || bytes.Contains(plain, []byte("\xa2mb")) {
		t.Fatalf("a request without paging fields encodes them: %x", plain)
	}
}
