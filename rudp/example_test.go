package rudp_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/raftkv/raftkv/rudp"
)

func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	secret := []byte("read me from a 0600 file")

	serverPC, err := rudp.ListenUDP(ctx, "udp4", "127.0.0.1:0", rudp.SocketOptions{})
	if err != nil {
		panic(err)
	}
	server, err := rudp.New(serverPC, rudp.Config{
		ClusterID: 1, Secret: secret, Logger: quiet,
		Handler: func(_ context.Context, m rudp.Message) []byte {
			return []byte(strings.ToUpper(string(m.Payload)))
		},
	})
	if err != nil {
		panic(err)
	}
	go server.Run(ctx)
	defer server.Close()

	clientPC, err := rudp.ListenUDP(ctx, "udp4", "127.0.0.1:0", rudp.SocketOptions{})
	if err != nil {
		panic(err)
	}
	client, err := rudp.New(clientPC, rudp.Config{ClusterID: 1, Secret: secret, Logger: quiet})
	if err != nil {
		panic(err)
	}
	go client.Run(ctx)
	defer client.Close()

	reply, err := client.Call(ctx, server.AddrPort(), []byte("hello"))
	fmt.Println(string(reply), err)
	// Output: HELLO <nil>
}
