//go:build !unix

package node

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
