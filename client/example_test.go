package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/raftkv/raftkv/client"
)

// This example needs a running cluster (`make run`), so it has no Output
// line and is only compiled by go test.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Config{
		Entrance:  "127.0.0.1:7700",
		Endpoints: []string{"127.0.0.1:7701", "127.0.0.1:7702", "127.0.0.1:7703"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	if _, err := c.Put(ctx, "greeting", []byte("hello")); errors.Is(err, client.ErrOutcomeUnknown) {
		log.Print("the put may or may not have happened; read to find out")
	} else if err != nil {
		log.Fatal(err)
	}
	res, err := c.Get(ctx, "greeting", client.GetOptions{})
	switch {
	case errors.Is(err, client.ErrNotFound):
		fmt.Println("no greeting")
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Printf("%s (revision %d)\n", res.KVs[0].Value, res.KVs[0].ModRevision)
	}
}

// A compare-and-swap writes only when the key still holds what was read.
func ExampleClient_CAS() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{Endpoints: []string{"127.0.0.1:7701"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	_, err = c.CAS(ctx, "config", client.Compare{Target: client.CompareValue, Value: []byte("v1")}, []byte("v2"), false)
	if errors.Is(err, client.ErrCompareFailed) {
		fmt.Println("someone else changed config first")
	}
}
