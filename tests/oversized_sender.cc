// greenfed_oversized_sender: the oversized-multipart attack, for measuring the
// coordinator's memory under it (scripts/oversized_rss.sh). Not a test.
// Sends FRAMES frames of MIB MiB each as one multipart message to ENDPOINT from
// SENDERS concurrent DEALER sockets, then waits up to WAIT_S seconds for each reply.
// Every frame points at the same buffer (zero-copy), so the sender itself holds
// ~MIB MiB. CURVE when GREENFED_ATTACK_SERVER_KEY, _PUBLIC_KEY and _SECRET_KEY
// (Z85) are set; plaintext otherwise.
// Usage: greenfed_oversized_sender ENDPOINT FRAMES MIB SENDERS [WAIT_S]
#include <zmq.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

void NoFree(void*, void*) {}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: greenfed_oversized_sender ENDPOINT FRAMES MIB SENDERS [WAIT_S]\n");
    return 2;
  }
  const std::string endpoint = argv[1];
  const int frames = std::atoi(argv[2]);
  const size_t bytes = static_cast<size_t>(std::atoi(argv[3])) << 20;
  const int senders = std::atoi(argv[4]);
  const int wait_ms = (argc > 5 ? std::atoi(argv[5]) : 60) * 1000;
  if (frames < 1 || bytes == 0 || senders < 1) {
    std::fprintf(stderr, "greenfed_oversized_sender: FRAMES, MIB and SENDERS must be >= 1\n");
    return 2;
  }
  const char* server_key = std::getenv("GREENFED_ATTACK_SERVER_KEY");
  const char* public_key = std::getenv("GREENFED_ATTACK_PUBLIC_KEY");
  const char* secret_key = std::getenv("GREENFED_ATTACK_SECRET_KEY");
  const bool curve = server_key && public_key && secret_key;
  std::vector<char> buffer(bytes, 'x');
  void* ctx = zmq_ctx_new();
  std::vector<std::thread> threads;
  std::vector<int> replies(static_cast<size_t>(senders), -1);
  for (int s = 0; s < senders; ++s) {
    threads.emplace_back([&, s] {
      void* d = zmq_socket(ctx, ZMQ_DEALER);
      const int linger = 0;
      zmq_setsockopt(d, ZMQ_RCVTIMEO, &wait_ms, sizeof(wait_ms));
      zmq_setsockopt(d, ZMQ_LINGER, &linger, sizeof(linger));
      if (curve) {
        zmq_setsockopt(d, ZMQ_CURVE_SERVERKEY, server_key, std::strlen(server_key));
        zmq_setsockopt(d, ZMQ_CURVE_PUBLICKEY, public_key, std::strlen(public_key));
        zmq_setsockopt(d, ZMQ_CURVE_SECRETKEY, secret_key, std::strlen(secret_key));
      }
      zmq_connect(d, endpoint.c_str());
      for (int i = 0; i < frames; ++i) {
        zmq_msg_t m;
        zmq_msg_init_data(&m, buffer.data(), bytes, NoFree, nullptr);
        zmq_msg_send(&m, d, i + 1 < frames ? ZMQ_SNDMORE : 0);
      }
      zmq_msg_t r;
      zmq_msg_init(&r);
      replies[static_cast<size_t>(s)] = zmq_msg_recv(&r, d, 0);
      zmq_msg_close(&r);
      zmq_close(d);
    });
  }
  for (auto& t : threads) t.join();
  int answered = 0;
  for (int n : replies) answered += n >= 0;
  std::printf("%d of %d senders got a reply (%s, %d frames x %d MiB each)\n", answered, senders,
              curve ? "CURVE" : "plaintext", frames, std::atoi(argv[3]));
  zmq_ctx_term(ctx);
  return 0;
}
