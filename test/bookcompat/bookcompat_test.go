package bookcompat_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
	"github.com/proglog/proglog/test/bookcompat/bookv1"
)

func TestMain(m *testing.M) {
	registerBookBalancer()
	os.Exit(m.Run())
}

// TestBookClients runs the seed book's client flows, on the book's wire
// format, against three `proglog agent` processes started with the book's
// flags.
func TestBookClients(t *testing.T) {
	files := tlsconfigtest.Files(t)
	c := startCluster(t, 3, files)
	ctx, cancel := context.WithTimeout(context.Background(), 2*clusterTimeout)
	defer cancel()

	root := func(i int) bookv1.LogClient {
		return bookv1.NewLogClient(c.dial(t, i, files.RootClientCertFile, files.RootClientKeyFile))
	}
	servers, err := root(0).GetServers(ctx, &bookv1.GetServersRequest{})
	require.NoError(t, err)
	leader := -1
	for _, s := range servers.GetServers() {
		if s.GetIsLeader() {
			leader = slices.Index(c.rpcAddrs, s.GetRpcAddr())
		}
	}
	require.NotEqualf(t, -1, leader, "no leader among %v", servers.GetServers())
	followers := []int{(leader + 1) % 3, (leader + 2) % 3}

	t.Run("GetServers lists every node, one leading", func(t *testing.T) {
		var ids, addrs []string
		for _, s := range servers.GetServers() {
			ids = append(ids, s.GetId())
			addrs = append(addrs, s.GetRpcAddr())
		}
		require.ElementsMatch(t, []string{"node-1", "node-2", "node-3"}, ids)
		require.ElementsMatch(t, c.rpcAddrs, addrs)
	})

	t.Run("produce/consume a message to/from the log succeeds", func(t *testing.T) {
		want := &bookv1.Record{Value: []byte("hello world")}
		produced, err := root(leader).Produce(ctx, &bookv1.ProduceRequest{Record: want})
		require.NoError(t, err)
		want.Offset = produced.GetOffset()
		// The whole record, as the book's client sees it, from every node:
		// nothing but value and offset.
		for i := range c.rpcAddrs {
			consumed, err := root(i).Consume(ctx, &bookv1.ConsumeRequest{Offset: want.Offset})
			require.NoError(t, err, "Consume on node %d", i+1)
			require.Truef(t, proto.Equal(want, consumed.GetRecord()), "node %d: Consume(%d) = %v, want %v",
				i+1, want.Offset, consumed.GetRecord(), want)
		}
	})

	t.Run("consume past log boundary fails", func(t *testing.T) {
		produced, err := root(leader).Produce(ctx, &bookv1.ProduceRequest{Record: &bookv1.Record{Value: []byte("hello world")}})
		require.NoError(t, err)
		consumed, err := root(leader).Consume(ctx, &bookv1.ConsumeRequest{Offset: produced.GetOffset() + 1})
		require.Nil(t, consumed)
		// The book's server answers 404, which is no gRPC code; proglog
		// answers OutOfRange.
		require.Equalf(t, codes.OutOfRange, status.Code(err), "Consume past the end: %v", err)
	})

	t.Run("produce/consume stream succeeds", func(t *testing.T) {
		records := []*bookv1.Record{{Value: []byte("first message")}, {Value: []byte("second message")}}
		produce, err := root(leader).ProduceStream(ctx)
		require.NoError(t, err)
		var first uint64
		for i, record := range records {
			require.NoError(t, produce.Send(&bookv1.ProduceRequest{Record: record}))
			res, err := produce.Recv()
			require.NoError(t, err)
			if i == 0 {
				first = res.GetOffset()
			}
			require.Equalf(t, first+uint64(i), res.GetOffset(), "ProduceStream offset of record %d", i)
		}
		require.NoError(t, produce.CloseSend())

		consume, err := root(followers[0]).ConsumeStream(ctx, &bookv1.ConsumeRequest{Offset: first})
		require.NoError(t, err)
		for i, record := range records {
			res, err := consume.Recv()
			require.NoError(t, err)
			want := &bookv1.Record{Value: record.GetValue(), Offset: first + uint64(i)}
			require.Truef(t, proto.Equal(want, res.GetRecord()), "ConsumeStream sent %v, want %v", res.GetRecord(), want)
		}
	})

	t.Run("unauthorized fails", func(t *testing.T) {
		nobody := bookv1.NewLogClient(c.dial(t, leader, files.NobodyClientCertFile, files.NobodyClientKeyFile))
		produced, err := nobody.Produce(ctx, &bookv1.ProduceRequest{Record: &bookv1.Record{Value: []byte("hello world")}})
		require.Nil(t, produced)
		require.Equalf(t, codes.PermissionDenied, status.Code(err), "nobody's Produce: %v", err)
		consumed, err := nobody.Consume(ctx, &bookv1.ConsumeRequest{Offset: 0})
		require.Nil(t, consumed)
		require.Equalf(t, codes.PermissionDenied, status.Code(err), "nobody's Consume: %v", err)
	})

	// (Health: startCluster waited for every node's health service to say
	// SERVING, to a client without a certificate.)

	t.Run("resolver and picker send writes to the leader and reads to the followers", func(t *testing.T) {
		before := make([][2]int, 3)
		for i := range before {
			before[i] = [2]int{c.handled(t, i, "Produce"), c.handled(t, i, "Consume")}
		}
		conn, err := grpc.NewClient(fmt.Sprintf("%s:///%s", bookScheme, c.rpcAddrs[0]),
			grpc.WithResolvers(bookResolverBuilder{creds: c.creds(t, files.RootClientCertFile, files.RootClientKeyFile)}),
			grpc.WithTransportCredentials(c.creds(t, files.RootClientCertFile, files.RootClientKeyFile)))
		require.NoError(t, err)
		defer conn.Close()
		client := bookv1.NewLogClient(conn)

		const n = 6
		var wants []*bookv1.Record
		for i := range n {
			want := &bookv1.Record{Value: []byte(fmt.Sprintf("balanced %d", i))}
			// A follower would refuse the write: it succeeds at the leader.
			produced, err := client.Produce(ctx, &bookv1.ProduceRequest{Record: want}, grpc.WaitForReady(true))
			require.NoError(t, err)
			want.Offset = produced.GetOffset()
			wants = append(wants, want)
		}
		for _, want := range wants {
			consumed, err := client.Consume(ctx, &bookv1.ConsumeRequest{Offset: want.GetOffset()}, grpc.WaitForReady(true))
			require.NoError(t, err)
			require.Truef(t, proto.Equal(want, consumed.GetRecord()), "Consume(%d) = %v, want %v", want.GetOffset(), consumed.GetRecord(), want)
		}

		// Where the calls went, by each node's own metrics.
		for i := range before {
			produced := c.handled(t, i, "Produce") - before[i][0]
			consumed := c.handled(t, i, "Consume") - before[i][1]
			if i == leader {
				require.Equalf(t, n, produced, "Produce calls the leader (node %d) served", i+1)
				require.Zerof(t, consumed, "Consume calls the leader (node %d) served", i+1)
			} else {
				require.Zerof(t, produced, "Produce calls follower node %d served", i+1)
				require.Equalf(t, n/2, consumed, "Consume calls follower node %d served (round-robin)", i+1)
			}
		}
	})
}
