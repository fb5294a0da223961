package proto_test

import (
	"fmt"

	"github.com/raftkv/raftkv/internal/proto"
)

func Example() {
	p := proto.MustEncode(proto.KindJoin, &proto.JoinRequest{Name: "n1", Addr: "127.0.0.1:7701"})
	kind, body, _ := proto.Split(p)
	var req proto.JoinRequest
	if err := proto.Decode(body, &req); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(kind == proto.KindJoin, req.Name, req.Addr)
	// Output: true n1 127.0.0.1:7701
}
