package raft

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/*.txt scripts")

// TestScripts runs the behaviour scripts in testdata/*.txt. Each command is
// followed by "----" and its expected output, then a blank line:
//
//	add-nodes 3
//	campaign 1
//	----
//	1: leader term=2 lead=1 commit=2 applied=2 last=2
//	...
//
// Commands (ids are node IDs):
//
//	add-nodes N [prevote=false] [checkquorum=false] [chunk=BYTES]
//	add-joiner ID            a node with empty storage
//	campaign ID | tick ID N | tick-all N | stabilize | restart ID
//	propose ID DATA | conf-change ID add-learner|add-voter|remove NODE
//	transfer-leader ID TARGET | read-index ID CTX | compact ID [BYTES]
//	partition 1 2|3          cut every link between the groups
//	drop FROM TO TYPE        drop messages of TYPE (e.g. MsgApp) on FROM->TO
//	heal | status | applied ID | read-states ID | traffic
//
// Every command except the last four prints the status after delivering
// all messages. Run with -rewrite to regenerate the expected output.
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts in testdata: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { runScript(t, file) })
	}
}

type scriptCase struct {
	pos, cmd, want string
}

func parseScript(t *testing.T, file string) []scriptCase {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var cases []scriptCase
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c := scriptCase{pos: fmt.Sprintf("%s:%d", file, i+1), cmd: line}
		i++
		if i >= len(lines) || strings.TrimSpace(lines[i]) != "----" {
			t.Fatalf("%s: command %q not followed by ----", c.pos, line)
		}
		var want []string
		for i++; i < len(lines) && lines[i] != ""; i++ {
			want = append(want, lines[i])
		}
		c.want = strings.Join(want, "\n")
		cases = append(cases, c)
	}
	return cases
}

func runScript(t *testing.T, file string) {
	cases := parseScript(t, file)
	s := &scriptEnv{t: t}
	var out strings.Builder
	for _, c := range cases {
		got := strings.TrimRight(s.run(c), "\n")
		if *rewrite {
			fmt.Fprintf(&out, "%s\n----\n%s\n\n", c.cmd, got)
			continue
		}
		if got != c.want {
			t.Fatalf("%s: %s\ngot:\n%s\nwant:\n%s", c.pos, c.cmd, got, c.want)
		}
	}
	if *rewrite {
		// Keep the leading comment block.
		b, _ := os.ReadFile(file)
		var head strings.Builder
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(l, "#") {
				break
			}
			head.WriteString(l + "\n")
		}
		if head.Len() > 0 {
			head.WriteString("\n")
		}
		if err := os.WriteFile(file, []byte(head.String()+out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type scriptEnv struct {
	t  *testing.T
	nw *network
	// drops are (from, to, type) filters.
	drops map[connem]map[MessageType]bool
}

func (s *scriptEnv) id(pos, arg string) uint64 {
	n, err := strconv.ParseUint(arg, 10, 64)
	if err != nil {
		s.t.Fatalf("%s: bad id %q", pos, arg)
	}
	return n
}

func (s *scriptEnv) run(c scriptCase) string {
	f := strings.Fields(c.cmd)
	args := f[1:]
	need := func(n int) {
		if len(args) < n {
			s.t.Fatalf("%s: %s needs %d arguments", c.pos, f[0], n)
		}
	}
	var extra string
	switch f[0] {
	case "add-nodes":
		need(1)
		n, _ := strconv.Atoi(args[0])
		opts := map[string]string{}
		for _, a := range args[1:] {
			k, v, _ := strings.Cut(a, "=")
			opts[k] = v
		}
		var ids []uint64
		for i := 1; i <= n; i++ {
			ids = append(ids, uint64(i))
		}
		s.nw = newNetworkWithConfig(s.t, func(cfg *Config) {
			cfg.DisablePreVote = opts["prevote"] == "false"
			cfg.DisableCheckQuorum = opts["checkquorum"] == "false"
			if v, ok := opts["chunk"]; ok {
				cfg.SnapshotChunkBytes, _ = strconv.ParseUint(v, 10, 64)
			}
		}, ids...)
		s.drops = map[connem]map[MessageType]bool{}
		s.nw.hook = s.filter
	case "add-joiner":
		need(1)
		cfg := testConfig(s.t, s.id(c.pos, args[0]), NewMemoryStorage())
		first := s.nw.nodes[s.nw.ids()[0]].cfg
		cfg.DisablePreVote, cfg.DisableCheckQuorum, cfg.SnapshotChunkBytes = first.DisablePreVote, first.DisableCheckQuorum, first.SnapshotChunkBytes
		s.nw.addNode(cfg)
	case "campaign":
		need(1)
		_ = s.nw.node(s.id(c.pos, args[0])).Campaign()
	case "tick":
		need(2)
		n, _ := strconv.Atoi(args[1])
		s.nw.tickOne(s.id(c.pos, args[0]), n)
	case "tick-all":
		need(1)
		n, _ := strconv.Atoi(args[0])
		s.nw.tickAll(n)
	case "stabilize":
	case "restart":
		need(1)
		s.nw.restart(s.id(c.pos, args[0]))
	case "propose":
		need(2)
		if err := s.nw.node(s.id(c.pos, args[0])).Propose([]byte(args[1])); err != nil {
			extra = "error: " + err.Error() + "\n"
		}
	case "conf-change":
		need(3)
		types := map[string]ConfChangeType{"add-learner": ConfChangeAddLearner, "add-voter": ConfChangeAddVoter, "remove": ConfChangeRemoveNode}
		typ, ok := types[args[1]]
		if !ok {
			s.t.Fatalf("%s: unknown conf change %q", c.pos, args[1])
		}
		cc := ConfChange{Type: typ, NodeID: s.id(c.pos, args[2])}
		if err := s.nw.node(s.id(c.pos, args[0])).ProposeConfChange(cc); err != nil {
			extra = "error: " + err.Error() + "\n"
		}
	case "transfer-leader":
		need(2)
		s.nw.node(s.id(c.pos, args[0])).TransferLeader(s.id(c.pos, args[1]))
	case "read-index":
		need(2)
		s.nw.node(s.id(c.pos, args[0])).ReadIndex([]byte(args[1]))
	case "compact":
		need(1)
		size := 0
		if len(args) > 1 {
			size, _ = strconv.Atoi(args[1])
		}
		snap := s.nw.compact(s.id(c.pos, args[0]), make([]byte, size))
		extra = fmt.Sprintf("snapshot index=%d term=%d bytes=%d\n", snap.Meta.Index, snap.Meta.Term, len(snap.Data))
	case "partition":
		groups := strings.Split(strings.Join(args, " "), "|")
		var sets [][]uint64
		for _, g := range groups {
			var set []uint64
			for _, a := range strings.Fields(g) {
				set = append(set, s.id(c.pos, a))
			}
			sets = append(sets, set)
		}
		for i := range sets {
			for j := range sets {
				if i == j {
					continue
				}
				for _, a := range sets[i] {
					for _, b := range sets[j] {
						s.nw.dropm[connem{a, b}] = true
					}
				}
			}
		}
	case "drop":
		need(3)
		k := connem{s.id(c.pos, args[0]), s.id(c.pos, args[1])}
		if s.drops[k] == nil {
			s.drops[k] = map[MessageType]bool{}
		}
		found := false
		for mt := MsgHup; mt <= MsgUnreachable; mt++ {
			if mt.String() == args[2] {
				s.drops[k][mt] = true
				found = true
			}
		}
		if !found {
			s.t.Fatalf("%s: unknown message type %q", c.pos, args[2])
		}
	case "heal":
		s.nw.dropm = map[connem]bool{}
		s.drops = map[connem]map[MessageType]bool{}
	case "status":
		return s.status()
	case "applied":
		need(1)
		return strings.Join(s.nw.appliedData(s.id(c.pos, args[0])), " ")
	case "read-states":
		need(1)
		var out []string
		for _, rs := range s.nw.nodes[s.id(c.pos, args[0])].readStates {
			out = append(out, fmt.Sprintf("%s@%d", rs.RequestCtx, rs.Index))
		}
		return strings.Join(out, " ")
	case "traffic":
		var out []string
		for mt := MsgHup; mt <= MsgUnreachable; mt++ {
			if n := s.nw.sent[mt]; n > 0 {
				out = append(out, fmt.Sprintf("%s=%d", mt, n))
			}
		}
		s.nw.sent = map[MessageType]int{}
		return strings.Join(out, " ")
	default:
		s.t.Fatalf("%s: unknown command %q", c.pos, f[0])
	}
	s.nw.stabilize()
	return extra + s.status()
}

func (s *scriptEnv) filter(m *Message) bool {
	return !s.drops[connem{m.From, m.To}][m.Type]
}

func (s *scriptEnv) status() string {
	var b strings.Builder
	for _, id := range s.nw.ids() {
		r := s.nw.raft(id)
		fmt.Fprintf(&b, "%d: %s term=%d lead=%d commit=%d applied=%d last=%d", id, r.state, r.Term, r.lead,
			r.raftLog.committed, r.raftLog.applied, r.raftLog.lastIndex())
		if r.state == StateLeader {
			var prs []string
			for _, pid := range r.ids {
				if pid == r.id {
					continue
				}
				pr := r.prs[pid]
				kind := ""
				if pr.IsLearner {
					kind = "learner "
				}
				prs = append(prs, fmt.Sprintf("%d:%s%s/%d", pid, kind, pr.State, pr.Match))
			}
			fmt.Fprintf(&b, " [%s]", strings.Join(prs, " "))
			if r.leadTransferee != None {
				fmt.Fprintf(&b, " transferring-to=%d", r.leadTransferee)
			}
		}
		if !s.nw.raft(id).isVoter(id) {
			if slices.Contains(r.cs.Learners, id) {
				b.WriteString(" (learner)")
			} else {
				b.WriteString(" (not a member)")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}
