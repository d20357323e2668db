package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
)

// topicAuthorizer lets everyone consume every topic but "secret".
type topicAuthorizer struct{}

func (topicAuthorizer) Authorize(subject, object, action string) error {
	if object == "secret" && action == ConsumeAction {
		return status.Errorf(codes.PermissionDenied, "%s may not consume %s", subject, object)
	}
	return nil
}

func TestConsumerGroups(t *testing.T) {
	cfg := testConfig(t)
	cfg.Authorizer = topicAuthorizer{}
	ts := newTestServer(t, cfg)
	ctx := testContext(t)
	for _, topic := range []string{"orders", "secret"} {
		_, err := ts.client.CreateTopic(ctx, &api.CreateTopicRequest{Name: topic})
		require.NoError(t, err)
	}
	for range 5 {
		_, err := ts.client.Produce(ctx, &api.ProduceRequest{Topic: "orders", Record: &api.Record{Value: []byte("x")}})
		require.NoError(t, err)
	}
	commit := func(group string, offset uint64, reset bool) (uint64, error) {
		res, err := ts.client.CommitOffset(ctx, &api.CommitOffsetRequest{Group: group, Topic: "orders", Offset: offset, Reset_: reset})
		return res.GetOffset(), err
	}
	_, err := ts.client.FetchOffset(ctx, &api.FetchOffsetRequest{Group: "g", Topic: "orders"})
	requireCode(t, err, codes.NotFound)
	off, err := commit("g", 3, false)
	require.NoError(t, err)
	require.Equal(t, uint64(3), off)
	off, err = commit("g", 1, false)
	require.NoError(t, err)
	require.Equal(t, uint64(3), off, "commits only move forward")
	_, err = commit("g", 6, false)
	requireCode(t, err, codes.OutOfRange)
	_, err = commit("a/b", 1, false)
	requireCode(t, err, codes.InvalidArgument)
	_, err = ts.client.CommitOffset(ctx, &api.CommitOffsetRequest{Group: "g", Topic: "secret"})
	requireCode(t, err, codes.PermissionDenied)
	fetched, err := ts.client.FetchOffset(ctx, &api.FetchOffsetRequest{Group: "g", Topic: "orders"})
	require.NoError(t, err)
	require.Equal(t, uint64(3), fetched.GetOffset())

	// ConsumeStream with the group starts at its committed offset.
	stream, err := ts.client.ConsumeStream(ctx, &api.ConsumeRequest{Topic: "orders", Group: "g"})
	require.NoError(t, err)
	res, err := stream.Recv()
	require.NoError(t, err)
	require.Equal(t, uint64(3), res.GetRecord().GetOffset())

	off, err = commit("g", 1, true)
	require.NoError(t, err)
	require.Equal(t, uint64(1), off, "a reset moves back")

	// A group whose only topic the caller may not consume is invisible.
	log := cfg.CommitLog
	_, err = log.CommitOffset(ctx, "hidden", "secret", 0, false)
	require.NoError(t, err)
	groups, err := ts.client.ListGroups(ctx, &api.ListGroupsRequest{})
	require.NoError(t, err)
	require.Len(t, groups.GetGroups(), 1)
	require.Equal(t, "g", groups.GetGroups()[0].GetName())
	g := groups.GetGroups()[0].GetTopics()[0]
	require.Equal(t, []uint64{1, 5, 4}, []uint64{g.GetCommitted(), g.GetNextOffset(), g.GetLag()})
	_, err = ts.client.DescribeGroup(ctx, &api.DescribeGroupRequest{Group: "hidden"})
	requireCode(t, err, codes.NotFound)
	desc, err := ts.client.DescribeGroup(ctx, &api.DescribeGroupRequest{Group: "g"})
	require.NoError(t, err)
	require.Equal(t, "orders", desc.GetGroup().GetTopics()[0].GetTopic())
}

func TestHTTPGroupOffset(t *testing.T) {
	cfg := testConfig(t)
	_, err := cfg.CommitLog.AppendBatch(context.Background(), api.DefaultTopic, []*api.Record{{Value: []byte("a")}, {Value: []byte("b")}})
	require.NoError(t, err)
	handler, err := NewHTTPHandler(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(handler)
	defer srv.Close()
	do := func(method, path, body string) (int, string) {
		req, err := http.NewRequestWithContext(testContext(t), method, srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		res, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		got, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res.StatusCode, string(got)
	}
	const path = "/topics/default/groups/g/offset"
	code, _ := do(http.MethodGet, path, "")
	require.Equal(t, http.StatusNotFound, code)
	code, body := do(http.MethodPost, path, `{"offset": 2}`)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"offset": 2}`, body)
	code, body = do(http.MethodPost, path, `{"offset": 1}`)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"offset": 2}`, body)
	code, body = do(http.MethodPost, path, `{"offset": 1, "reset": true}`)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"offset": 1}`, body)
	code, body = do(http.MethodGet, path, "")
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"offset": 1}`, body)
	code, _ = do(http.MethodPost, path, `{}`)
	require.Equal(t, http.StatusBadRequest, code)
	code, _ = do(http.MethodPost, path, `{"offset": 3}`)
	require.Equal(t, http.StatusNotFound, code, "past the end is out of range")
	code, _ = do(http.MethodDelete, path, "")
	require.Equal(t, http.StatusMethodNotAllowed, code)
}
