// CURVE authentication and byte budgets: key files, the ZAP decision, the per-peer
// budget (pure logic), and the coordinator and clients over real CURVE sockets on
// loopback with a small fake task.
#include <doctest/doctest.h>

#include "counting_task.h"
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdlib.h>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "../coordinator/src/zap.h"
#include "greenfed/client/client.h"
#include "greenfed/coordinator/peer_guard.h"
#include "greenfed/coordinator/server.h"
#include "greenfed/keys.h"
#include "greenfed/transport.h"
#include "run_helpers.h"

using namespace greenfed;

namespace {

using greenfed::testing::MakeTempDir;
using greenfed::testing::ReadText;

void WriteFile(const std::string& path, const std::string& text, mode_t mode = 0600) {
  {
    std::ofstream out(path);
    out << text;
  }
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

CurveKeyPair NewKeys() {
  auto k = GenerateCurveKeyPair();
  REQUIRE(k.ok());
  return *k;
}

using CountingTask = greenfed::testing::CountingTask;

ServerOptions OneClientFederation() {
  ServerOptions o;
  o.bind = "tcp://127.0.0.1:*";
  o.round.num_clients = 1;
  o.round.min_available_clients = 1;
  o.round.min_fit_clients = 1;
  o.round.max_rounds = 5;
  o.round.target_accuracy = 0.9;
  o.round.task = "counting";
  o.round.heartbeat_timeout_s = 30;
  o.shutdown_grace_s = 2;
  return o;
}

struct Coordinator {
  CountingTask task;
  CarbonTable carbon = CarbonTable::BuiltIn();
  std::unique_ptr<Env> env = NewSystemEnv();
  std::unique_ptr<PhaseMeter> meter;
  std::unique_ptr<RunDir> run_dir;
  std::ostringstream out, diag;
  Logger log{"coordinator", &out, &diag};
  std::unique_ptr<Server> server;
  std::string endpoint;
  StatusOr<ServerResult> result = Internal("not run");
  std::thread thread;

  explicit Coordinator(const ServerOptions& options) {
    MeterOptions mo;
    mo.kind = "model";
    auto set = OpenMeters(mo, env.get());
    REQUIRE(set.ok());
    meter = std::make_unique<PhaseMeter>(std::move(set).value(), env.get());
    auto rd = RunDir::Create(MakeTempDir("greenfed-curve") + "/run");
    REQUIRE(rd.ok());
    run_dir = std::move(rd).value();
    server = std::make_unique<Server>(options, &task, Parameters{MakeFloatBlob("w", {2}, {0, 0})}, &carbon,
                                      meter.get(), run_dir.get(), env.get(), &log);
    auto ep = server->Bind();
    REQUIRE(ep.ok());
    endpoint = *ep;
  }
  void Start() {
    thread = std::thread([this] { result = server->Run(); });
  }
  void Join() {
    if (thread.joinable()) thread.join();
  }
  ~Coordinator() { Join(); }
};

struct ClientRun {
  TaskRegistry registry;
  std::unique_ptr<Env> env = NewSystemEnv();
  std::unique_ptr<PhaseMeter> meter;
  std::ostringstream out, diag;
  Logger log{"client", &out, &diag};
  StatusOr<ClientResult> Run(ClientOptions co) {
    REQUIRE(registry.Register("counting", [] { return std::make_unique<CountingTask>(); }).ok());
    MeterOptions mo;
    mo.kind = "model";
    meter = std::make_unique<PhaseMeter>(std::move(OpenMeters(mo, env.get())).value(), env.get());
    co.country = "FRA";
    Client client(co, &registry, meter.get(), env.get(), &log);
    return client.Run();
  }
};

ClientOptions CurveClient(const std::string& endpoint, const CurveKeyPair& mine, const std::string& server_public) {
  ClientOptions co;
  co.connect = endpoint;
  co.curve_secret_key = mine.secret_key;
  co.curve_public_key = mine.public_key;
  co.curve_server_key = server_public;
  co.connect_timeout_s = 20;
  co.initial_backoff_s = 0.3;
  return co;
}

// A raw DEALER that speaks CURVE with `mine` to the server `server_public`.
struct RawPeer {
  zmq::context_t ctx;
  zmq::socket_t s{ctx, zmq::socket_type::dealer};
  RawPeer(const std::string& endpoint, const CurveKeyPair* mine, const std::string& server_public,
          const std::string& routing_id = "") {
    s.set(zmq::sockopt::linger, 0);
    s.set(zmq::sockopt::rcvtimeo, 5000);
    if (!routing_id.empty()) s.set(zmq::sockopt::routing_id, routing_id);
    if (mine) {
      s.set(zmq::sockopt::curve_serverkey, server_public);
      s.set(zmq::sockopt::curve_publickey, mine->public_key);
      s.set(zmq::sockopt::curve_secretkey, mine->secret_key);
    }
    s.connect(endpoint);
  }
  void Send(const std::vector<std::string>& frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      s.send(zmq::buffer(frames[i]), i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  // The text of the Error answered, or why there is none.
  std::string ErrorReply() {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(s, std::back_inserter(parts))) return "no reply";
    Frames frames;
    for (auto& p : parts) {
      const auto* d = static_cast<const uint8_t*>(p.data());
      frames.emplace_back(d, d + p.size());
    }
    auto m = Decode(frames);
    if (!m.ok()) return "undecodable reply: " + m.status().message();
    if (auto* e = std::get_if<ErrorMsg>(&*m)) return e->message;
    return std::string("not an error: ") + MsgTypeName(TypeOf(*m));
  }
};

std::string Header(const Message& m) {
  Frames f = Encode(m);
  return std::string(f[0].begin(), f[0].end());
}

}  // namespace

// ------------------------------------------------------------------ key files

TEST_CASE("curve: keygen writes NAME.key 0600 with both keys and NAME.pub 0644 with one line, reloads the same keys") {
  const std::string dir = MakeTempDir("greenfed-curve") + "/keys";
  const CurveKeyPair k = NewKeys();
  auto stem = WriteKeyPair(dir, "client-3", k);
  REQUIRE(stem.ok());
  CHECK(*stem == dir + "/client-3");
  CHECK(ModeOf(dir + "/client-3.key") == 0600);
  CHECK(ModeOf(dir + "/client-3.pub") == 0644);
  CHECK(ModeOf(dir) == 0700);
  const std::string pub = ReadText(dir + "/client-3.pub");
  CHECK(pub == k.public_key + "\n");
  const std::string key = ReadText(dir + "/client-3.key");
  CHECK(key.rfind("# greenfed CURVE key pair 'client-3'", 0) == 0);
  CHECK(key.find("public-key = " + k.public_key + "\n") != std::string::npos);
  CHECK(key.find("secret-key = " + k.secret_key + "\n") != std::string::npos);
  auto loaded = LoadSecretKeyFile(dir + "/client-3.key");
  REQUIRE(loaded.ok());
  CHECK(loaded->public_key == k.public_key);
  CHECK(loaded->secret_key == k.secret_key);
  auto p = LoadPublicKeyFile(dir + "/client-3.pub");
  REQUIRE(p.ok());
  CHECK(*p == k.public_key);
  // Never overwrites a key.
  auto again = WriteKeyPair(dir, "client-3", NewKeys());
  CHECK(again.status().code() == Code::kFailedPrecondition);
  CHECK(again.status().message().find("client-3.key already exists") != std::string::npos);
  CHECK(ReadText(dir + "/client-3.pub") == pub);
  CHECK(!WriteKeyPair(dir, "../evil", NewKeys()).ok());
  CHECK(!WriteKeyPair(dir, "", NewKeys()).ok());
}

TEST_CASE("curve: bad key files are refused with the file, the line and the reason") {
  const std::string dir = MakeTempDir("greenfed-curve");
  const CurveKeyPair k = NewKeys(), other = NewKeys();
  const std::string good = "# comment\npublic-key = " + k.public_key + "\nsecret-key = " + k.secret_key + "\n";

  WriteFile(dir + "/open.key", good, 0644);
  auto open = LoadSecretKeyFile(dir + "/open.key");
  CHECK(open.status().code() == Code::kPermissionDenied);
  CHECK(open.status().message().find(dir + "/open.key: secret key file has mode 0644") != std::string::npos);
  CHECK(open.status().message().find("chmod 600 " + dir + "/open.key") != std::string::npos);
  WriteFile(dir + "/group.key", good, 0640);
  CHECK(LoadSecretKeyFile(dir + "/group.key").status().code() == Code::kPermissionDenied);

  WriteFile(dir + "/badchar.key", "# c\n# c\nsecret-key = " + k.secret_key.substr(0, 39) + "~\n");
  auto badchar = LoadSecretKeyFile(dir + "/badchar.key");
  CHECK(badchar.status().message().find(dir + "/badchar.key:3: secret-key: character 40") != std::string::npos);
  WriteFile(dir + "/short.key", "secret-key = abc\n");
  CHECK(LoadSecretKeyFile(dir + "/short.key").status().message().find("short.key:1: secret-key: a CURVE key is 40 Z85 characters, got 3") !=
        std::string::npos);
  WriteFile(dir + "/mismatch.key", "public-key = " + other.public_key + "\nsecret-key = " + k.secret_key + "\n");
  CHECK(LoadSecretKeyFile(dir + "/mismatch.key").status().message().find("public-key does not belong to secret-key") !=
        std::string::npos);
  WriteFile(dir + "/junk.key", "hello world\n");
  CHECK(LoadSecretKeyFile(dir + "/junk.key").status().message().find("junk.key:1: expected 'public-key = KEY'") !=
        std::string::npos);
  WriteFile(dir + "/pubonly.key", k.public_key + "\n");
  CHECK(LoadSecretKeyFile(dir + "/pubonly.key").status().code() == Code::kInvalidArgument);
  CHECK(LoadSecretKeyFile(dir + "/missing.key").status().code() == Code::kNotFound);
  CHECK(LoadSecretKeyFile("/dev/zero").status().message().find("not a regular file") != std::string::npos);

  WriteFile(dir + "/two.pub", k.public_key + "\n" + other.public_key + "\n", 0644);
  CHECK(LoadPublicKeyFile(dir + "/two.pub").status().message().find("two.pub:2: a .pub file holds one key") !=
        std::string::npos);
  CHECK(LoadPublicKeyFile(dir + "/badchar.key").status().message().find("holds a secret key") != std::string::npos);
  WriteFile(dir + "/empty.pub", "# nothing\n", 0644);
  CHECK(LoadPublicKeyFile(dir + "/empty.pub").status().message().find("no public key") != std::string::npos);

  // Allow-lists: a file with comments, or a directory of *.pub.
  WriteFile(dir + "/allow.txt", "# clients\n" + k.public_key + "  # client-0\n\n" + other.public_key + "\n" +
                                    k.public_key + "\n", 0644);
  auto allow = LoadAllowList(dir + "/allow.txt");
  REQUIRE(allow.ok());
  CHECK(*allow == std::vector<std::string>{k.public_key, other.public_key});
  WriteFile(dir + "/allow-bad.txt", k.public_key + "\nnot-a-key\n", 0644);
  CHECK(LoadAllowList(dir + "/allow-bad.txt").status().message().find("allow-bad.txt:2: a CURVE key is 40") !=
        std::string::npos);
  WriteFile(dir + "/allow-empty.txt", "# nobody\n", 0644);
  CHECK(LoadAllowList(dir + "/allow-empty.txt").status().message().find("nobody could join") != std::string::npos);
  REQUIRE(::mkdir((dir + "/pubs").c_str(), 0755) == 0);
  CHECK(LoadAllowList(dir + "/pubs").status().message().find("no *.pub file") != std::string::npos);
  REQUIRE(WriteKeyPair(dir + "/pubs", "a", k).ok());
  REQUIRE(WriteKeyPair(dir + "/pubs", "b", other).ok());
  auto from_dir = LoadAllowList(dir + "/pubs");
  REQUIRE(from_dir.ok());
  CHECK(from_dir->size() == 2);
  CHECK(LoadAllowList(dir + "/nothing-here").status().code() == Code::kNotFound);
}

TEST_CASE("curve: the ZAP decision admits allow-listed CURVE keys only and names each refusal") {
  const CurveKeyPair listed = NewKeys(), stranger = NewKeys();
  const std::set<std::string> allowed = {listed.public_key};
  auto binary = [](const std::string& z85) {
    std::string b(32, '\0');
    REQUIRE(zmq_z85_decode(reinterpret_cast<uint8_t*>(b.data()), z85.c_str()) != nullptr);
    return b;
  };
  auto request = [](const std::string& mechanism, const std::string& credentials) {
    return std::vector<std::string>{"1.0", "7", "greenfed", "127.0.0.1", "id", mechanism, credentials};
  };
  ZapDecision ok = DecideZap(request("CURVE", binary(listed.public_key)), allowed);
  CHECK(ok.admit);
  CHECK(ok.user_id == listed.public_key);
  ZapDecision no = DecideZap(request("CURVE", binary(stranger.public_key)), allowed);
  CHECK(!no.admit);
  CHECK(no.reason == "unlisted-key");
  CHECK(no.key_prefix == stranger.public_key.substr(0, 8) + "...");
  CHECK(DecideZap(request("NULL", ""), allowed).reason == "not-curve");
  CHECK(DecideZap(request("CURVE", "short"), allowed).reason == "bad-request");
  CHECK(DecideZap({"2.0", "7"}, allowed).reason == "bad-request");
}

TEST_CASE("curve: the per-peer byte budget refuses a peer past its window's bytes and keeps a bounded table") {
  PeerBudgetOptions o;
  o.bytes_per_window = 1000;
  o.window_s = 10;
  o.max_peers = 3;
  PeerByteBudget b(o);
  CHECK(b.Remaining("a", 0) == 1000);
  b.Charge("a", 600, 1);
  CHECK(b.Remaining("a", 2) == 400);
  CHECK(b.Remaining("b", 2) == 1000);  // budgets are per peer
  b.Charge("a", 600, 3);
  CHECK(b.Remaining("a", 4) == 0);
  CHECK(b.Remaining("a", 10.5) == 1000);  // a new window
  for (const char* p : {"c", "d", "e", "f"}) b.Charge(p, 1, 11);
  CHECK(b.tracked_peers() <= 3);
}

TEST_CASE("curve: a routing id belongs to the first key seen with it, and the table is bounded") {
  RoutingIdBinding b(2);
  CHECK(b.Bind("r1", "curve:A") == BindResult::kBound);
  CHECK(b.Bind("r1", "curve:A") == BindResult::kBound);
  std::string owner;
  CHECK(b.Bind("r1", "curve:B", &owner) == BindResult::kOtherIdentity);
  CHECK(owner == "curve:A");
  CHECK(b.Bind("r1", "") == BindResult::kBound);  // insecure mode binds nothing
  CHECK(b.Bind("r2", "curve:B") == BindResult::kBound);
  CHECK(b.Bind("r3", "curve:C") == BindResult::kFull);
  CHECK(b.size() == 2);
}

// ------------------------------------------------------------ bounded receive

TEST_CASE("curve: an oversized multipart is drained frame by frame without being kept, and the next message arrives whole") {
  zmq::context_t ctx;
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.bind("tcp://127.0.0.1:*");
  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.set(zmq::sockopt::routing_id, "attacker");
  dealer.connect(router.get(zmq::sockopt::last_endpoint));
  const std::string frame(4 << 10, 'x');
  for (int i = 0; i < 17; ++i) dealer.send(zmq::buffer(frame), i < 16 ? zmq::send_flags::sndmore : zmq::send_flags::none);
  dealer.send(zmq::str_buffer("small"), zmq::send_flags::none);

  ReceiveLimits limits;
  limits.max_message_bytes = 16 << 10;
  limits.routing_id = true;
  auto wait = [&] {
    zmq::pollitem_t item{static_cast<void*>(router), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(5000));
  };
  wait();
  auto big = ReceiveBounded(static_cast<void*>(router), limits);
  REQUIRE(big.ok());
  REQUIRE(big->has_value());
  const ReceivedMessage& r = **big;
  CHECK(r.outcome == ReceiveOutcome::kTooLarge);
  CHECK(r.routing_id == "attacker");
  CHECK(r.frames.empty());
  CHECK(r.num_frames == 17);
  CHECK(r.wire_bytes == 17u * (4u << 10));
  CHECK(r.peak_copied_bytes <= (16u << 10));  // never more than the limit held at once
  wait();
  auto next = ReceiveBounded(static_cast<void*>(router), limits);
  REQUIRE(next.ok());
  REQUIRE(next->has_value());
  CHECK((*next)->outcome == ReceiveOutcome::kMessage);
  REQUIRE((*next)->frames.size() == 1);
  CHECK(std::string((*next)->frames[0].begin(), (*next)->frames[0].end()) == "small");
  // A smaller per-peer limit refuses with its own outcome.
  dealer.send(zmq::buffer(frame), zmq::send_flags::none);
  limits.peer_limit = [](const std::string&, const std::string&) { return uint64_t{100}; };
  wait();
  auto over = ReceiveBounded(static_cast<void*>(router), limits);
  REQUIRE(over.ok());
  REQUIRE(over->has_value());
  CHECK((*over)->outcome == ReceiveOutcome::kOverBudget);
  auto none = ReceiveBounded(static_cast<void*>(router), limits);
  REQUIRE(none.ok());
  CHECK(!none->has_value());
}

// ------------------------------------------------------- coordinator + clients

TEST_CASE("curve: neither a coordinator nor a client starts without keys unless insecure is asked for") {
  ServerOptions o = OneClientFederation();
  CountingTask task;
  CarbonTable carbon = CarbonTable::BuiltIn();
  auto env = NewSystemEnv();
  MeterOptions mo;
  mo.kind = "model";
  PhaseMeter meter(std::move(OpenMeters(mo, env.get())).value(), env.get());
  auto rd = RunDir::Create(MakeTempDir("greenfed-curve") + "/run");
  REQUIRE(rd.ok());
  std::ostringstream out, diag;
  Logger log("coordinator", &out, &diag);
  Server server(o, &task, Parameters{MakeFloatBlob("w", {2}, {0, 0})}, &carbon, &meter, rd->get(), env.get(), &log);
  auto bound = server.Bind();
  CHECK(bound.status().code() == Code::kFailedPrecondition);
  CHECK(bound.status().message().find("--insecure") != std::string::npos);

  ClientRun c;
  ClientOptions co;
  co.connect = "tcp://127.0.0.1:9";
  auto r = c.Run(co);
  CHECK(r.status().code() == Code::kFailedPrecondition);
  CHECK(r.status().message().find("--secret-key and --server-key") != std::string::npos);
}

TEST_CASE("curve: an unlisted key, a wrong server key and a plaintext peer get nowhere, the listed client completes the run") {
  const CurveKeyPair server_keys = NewKeys(), honest = NewKeys(), stranger = NewKeys(), impostor = NewKeys();
  ServerOptions o = OneClientFederation();
  o.curve_secret_key = server_keys.secret_key;
  o.allowed_client_keys = {honest.public_key, impostor.public_key};
  Coordinator c(o);
  c.Start();

  // A plaintext peer: the CURVE handshake never completes, its join is never answered.
  {
    zmq::context_t ctx;
    zmq::socket_t plain(ctx, zmq::socket_type::dealer);
    plain.set(zmq::sockopt::linger, 0);
    plain.set(zmq::sockopt::rcvtimeo, 1500);
    plain.connect(c.endpoint);
    JoinMsg j;
    j.client_id = "plaintext";
    j.country = "FRA";
    plain.send(zmq::buffer(Header(j)), zmq::send_flags::dontwait);
    zmq::message_t reply;
    CHECK(!plain.recv(reply));
  }
  // A client whose key is not on the allow-list: refused by ZAP, fails clearly.
  ClientRun unlisted;
  auto refused = unlisted.Run(CurveClient(c.endpoint, stranger, server_keys.public_key));
  CHECK(refused.status().code() == Code::kPermissionDenied);
  CHECK(refused.status().message().find("server key mismatch or handshake failed") != std::string::npos);
  CHECK(refused.status().message().find("refused this client's key") != std::string::npos);
  // A listed client that pins the wrong coordinator key: fails clearly, does not hang.
  ClientRun wrong_server;
  auto mismatch = wrong_server.Run(CurveClient(c.endpoint, impostor, NewKeys().public_key));
  CHECK(mismatch.status().code() == Code::kPermissionDenied);
  CHECK(mismatch.status().message().find("server key mismatch or handshake failed with " + c.endpoint) !=
        std::string::npos);

  // The honest, listed client completes the run.
  ClientRun good;
  auto done = good.Run(CurveClient(c.endpoint, honest, server_keys.public_key));
  c.Join();
  REQUIRE(done.ok());
  CHECK(done->rounds_trained == 3);
  REQUIRE(c.result.ok());
  CHECK(c.result->reached);
  CHECK(c.result->rounds == 3);
  CHECK(c.result->refused_handshakes >= 1);
  const std::string diag = c.diag.str();
  CHECK(diag.find("refused a CURVE handshake from 127.0.0.1: unlisted-key (client key " +
                  stranger.public_key.substr(0, 8) + "...)") != std::string::npos);
  CHECK(diag.find(stranger.public_key) == std::string::npos);  // never the whole key
  CHECK(diag.find("plaintext") == std::string::npos);          // the plaintext join never reached the machine
}

TEST_CASE("curve: an oversized multipart and a peer over its byte budget are refused unread, the run completes") {
  const CurveKeyPair server_keys = NewKeys(), honest = NewKeys(), rogue = NewKeys(), flooder = NewKeys();
  ServerOptions o = OneClientFederation();
  o.curve_secret_key = server_keys.secret_key;
  o.allowed_client_keys = {honest.public_key, rogue.public_key, flooder.public_key};
  o.max_message_bytes = 16 << 10;
  o.peer_bytes_per_window = 20 << 10;
  o.peer_window_s = 3600;  // one window for the whole test: no timing involved
  Coordinator c(o);
  c.Start();

  const std::string hb = Header(HeartbeatMsg{0, {}});
  {
    RawPeer p(c.endpoint, &rogue, server_keys.public_key);
    std::vector<std::string> frames = {hb};
    for (int i = 0; i < 17; ++i) frames.push_back(std::string(4 << 10, 'x'));
    p.Send(frames);
    const std::string err = p.ErrorReply();
    CHECK(err.find("in 18 frames is over the limit of 16384 bytes") != std::string::npos);
    // The whole multipart was drained: the next message is read on its own, and the
    // 69 KiB this peer sent count against its budget, so it is refused for that.
    p.Send({hb});
    CHECK(p.ErrorReply().find("over this peer's budget") != std::string::npos);
  }
  {
    RawPeer p(c.endpoint, &flooder, server_keys.public_key);
    const std::string pad(8 << 10, 'y');  // each under the message limit, together over the budget
    // Two fit the budget (and are answered as protocol errors: an unexpected frame)...
    p.Send({hb, pad});
    CHECK(p.ErrorReply().find("budget") == std::string::npos);
    p.Send({hb, pad});
    CHECK(p.ErrorReply().find("budget") == std::string::npos);
    // ...the third does not.
    p.Send({hb, pad});
    CHECK(p.ErrorReply().find("over this peer's budget of 20480 bytes per 3600 s") != std::string::npos);
  }
  ClientRun good;
  auto done = good.Run(CurveClient(c.endpoint, honest, server_keys.public_key));
  c.Join();
  REQUIRE(done.ok());
  CHECK(done->rounds_trained == 3);
  REQUIRE(c.result.ok());
  CHECK(c.result->reached);
  CHECK(c.result->refused_messages == 3);
  // The receive path never held more than the message limit for any one message.
  CHECK(c.result->peak_copied_message_bytes <= (16u << 10));
  CHECK(c.diag.str().find("refused a message from an unjoined peer (too-large), discarded unread") != std::string::npos);
}

TEST_CASE("curve: a routing id seen with one client key is refused under another (no impersonation by routing id)") {
  const CurveKeyPair server_keys = NewKeys(), first = NewKeys(), second = NewKeys();
  ServerOptions o = OneClientFederation();
  o.curve_secret_key = server_keys.secret_key;
  o.allowed_client_keys = {first.public_key, second.public_key};
  o.round.max_rounds = 1;
  Coordinator c(o);
  c.Start();
  const std::string hb = Header(HeartbeatMsg{0, {}});
  {
    RawPeer a(c.endpoint, &first, server_keys.public_key, "victim");
    a.Send({hb});
    CHECK(a.ErrorReply().find("join first") != std::string::npos);
  }
  std::string second_reply;
  for (int attempt = 0; attempt < 50; ++attempt) {
    // The first connection may still be open on the server for a moment (a ROUTER
    // refuses a duplicate routing id while it is): retry until the second gets in.
    RawPeer b(c.endpoint, &second, server_keys.public_key, "victim");
    b.s.set(zmq::sockopt::rcvtimeo, 200);
    b.Send({hb});
    second_reply = b.ErrorReply();
    if (second_reply != "no reply") break;
  }
  CHECK(second_reply == "this routing id belongs to another client key");
  // Let the run end: an honest client completes the one round.
  const CurveKeyPair& honest = first;
  ClientRun good;
  auto done = good.Run(CurveClient(c.endpoint, honest, server_keys.public_key));
  c.Join();
  CHECK(done.ok());
  CHECK(c.result.ok());
}
