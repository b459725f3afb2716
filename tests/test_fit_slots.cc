// FitSlots: the fit-slot limiter of `greenfed run` (client/include/greenfed/client/fit_slots.h).
// Real files and flock(2); other processes by fork(); no timed assertions.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "greenfed/client/fit_slots.h"
#include "run_helpers.h"

namespace {

using greenfed::testing::TempDir;
using greenfed::Code;
using greenfed::FitSlot;
using greenfed::FitSlots;
using greenfed::FitSlotsOptions;

FitSlots OpenSlots(const std::string& dir, uint32_t n) {
  FitSlotsOptions o;
  o.dir = dir;
  o.slots = n;
  auto slots = FitSlots::Open(o);
  REQUIRE_MESSAGE(slots.ok(), slots.status().ToString());
  return std::move(slots).value();
}

}  // namespace

TEST_CASE("fit slots: Open checks its options and creates the directory and N slot files") {
  TempDir tmp;
  FitSlotsOptions o;
  o.dir = "";
  CHECK(FitSlots::Open(o).status().code() == Code::kInvalidArgument);
  o.dir = tmp.path() + "/slots";
  o.slots = 0;
  CHECK(FitSlots::Open(o).status().code() == Code::kInvalidArgument);
  o.slots = 4097;
  CHECK(FitSlots::Open(o).status().code() == Code::kInvalidArgument);
  o.slots = 3;
  o.max_poll_s = 0;
  CHECK(FitSlots::Open(o).status().code() == Code::kInvalidArgument);
  o.max_poll_s = 0.004;
  o.dir = tmp.path() + "/missing-parent/slots";
  CHECK(FitSlots::Open(o).status().code() == Code::kUnavailable);
  o.dir = tmp.path() + "/slots";
  auto slots = FitSlots::Open(o);
  REQUIRE(slots.ok());
  for (uint32_t k = 0; k < 3; ++k) CHECK(std::filesystem::is_regular_file(slots->SlotPath(k)));
  CHECK_FALSE(std::filesystem::exists(slots->SlotPath(3)));
  // Opening again (a second client) reuses the files.
  CHECK(FitSlots::Open(o).ok());
}

TEST_CASE("fit slots: at most N held at once, and a released slot is taken again") {
  TempDir tmp;
  const FitSlots slots = OpenSlots(tmp.path(), 2);
  auto a = slots.TryAcquire(0);
  auto b = slots.TryAcquire(0);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  REQUIRE(a->held());
  REQUIRE(b->held());
  CHECK(a->index() != b->index());
  auto c = slots.TryAcquire(1);
  REQUIRE(c.ok());
  CHECK_FALSE(c->held());
  const uint32_t freed = b->index();
  b->Release();
  CHECK_FALSE(b->held());
  auto d = slots.TryAcquire(0);
  REQUIRE(d.ok());
  REQUIRE(d->held());
  CHECK(d->index() == freed);
  // Moving a slot moves the lock; the moved-from one releases nothing.
  FitSlot moved = std::move(*d);
  CHECK(moved.held());
  auto e = slots.TryAcquire(0);
  REQUIRE(e.ok());
  CHECK_FALSE(e->held());
}

TEST_CASE("fit slots: the sweep starts at the hint, so clients spread over free slots") {
  TempDir tmp;
  const FitSlots slots = OpenSlots(tmp.path(), 4);
  auto s = slots.TryAcquire(6);  // 6 % 4
  REQUIRE(s.ok());
  REQUIRE(s->held());
  CHECK(s->index() == 2);
  auto t = slots.TryAcquire(2);  // 2 is taken: the next one
  REQUIRE(t.ok());
  REQUIRE(t->held());
  CHECK(t->index() == 3);
}

TEST_CASE("fit slots: another process's slots count, and are freed when it dies without releasing") {
  TempDir tmp;
  const FitSlots slots = OpenSlots(tmp.path(), 2);
  int ready[2];
  int go[2];
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(go) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    auto x = slots.TryAcquire(0);
    auto y = slots.TryAcquire(0);
    const char ok = (x.ok() && y.ok() && x->held() && y->held()) ? 'y' : 'n';
    if (::write(ready[1], &ok, 1) != 1) ::_exit(3);
    char c;
    if (::read(go[0], &c, 1) != 1) ::_exit(4);
    ::_exit(0);  // dies holding both: the kernel drops the locks
  }
  char ok = 0;
  REQUIRE(::read(ready[0], &ok, 1) == 1);
  REQUIRE(ok == 'y');
  auto none = slots.TryAcquire(0);
  REQUIRE(none.ok());
  CHECK_FALSE(none->held());
  const char c = 'x';
  REQUIRE(::write(go[1], &c, 1) == 1);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  auto after = slots.Acquire(0);
  REQUIRE(after.ok());
  CHECK(after->held());
  for (int fd : {ready[0], ready[1], go[0], go[1]}) ::close(fd);
}

TEST_CASE("fit slots: Acquire waits for a release, and stops when cancelled") {
  TempDir tmp;
  const FitSlots slots = OpenSlots(tmp.path(), 1);
  auto held = slots.TryAcquire(0);
  REQUIRE(held.ok());
  REQUIRE(held->held());

  std::atomic<bool> cancel{false};
  greenfed::Status waited = greenfed::Status::Ok();
  std::thread waiter([&] { waited = slots.Acquire(0, &cancel).status(); });
  cancel = true;
  waiter.join();
  CHECK(waited.code() == Code::kUnavailable);
  CHECK(waited.message().find("stopped while waiting") != std::string::npos);

  std::atomic<bool> got{false};
  std::thread taker([&] {
    auto s = slots.Acquire(0);
    got = s.ok() && s->held();
  });
  held->Release();
  taker.join();
  CHECK(got);
}

TEST_CASE("fit slots: threads hammering 2 slots never hold more than 2 at once") {
  TempDir tmp;
  const FitSlots slots = OpenSlots(tmp.path(), 2);
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 30; ++i) {
        auto s = slots.Acquire(t);
        if (!s.ok() || !s->held()) {
          ++failures;
          continue;
        }
        const int now = ++inside;
        int prev = most.load();
        while (now > prev && !most.compare_exchange_weak(prev, now)) {
        }
        std::this_thread::yield();
        --inside;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  CHECK(most <= 2);
  CHECK(most >= 1);
}
