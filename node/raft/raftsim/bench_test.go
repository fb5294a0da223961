package raftsim

import "testing"

// BenchmarkSimulatedSecond measures the wall time of one virtual second
// of a busy 5-node cluster (2 clients, faults off).
func BenchmarkSimulatedSecond(b *testing.B) {
	c, err := New(Config{Seed: 1, Nodes: 5})
	if err != nil {
		b.Fatal(err)
	}
	h := &harness{t: b, Cluster: c}
	var stop bool
	var acks []ack
	h.startClients(2, &stop, &acks)
	b.ResetTimer()
	for b.Loop() {
		if err := c.RunFor(1000); err != nil {
			b.Fatal(c.Report())
		}
	}
	b.ReportMetric(float64(c.Stats().Msgs)/float64(b.N), "msgs/op")
}
