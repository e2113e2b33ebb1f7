#pragma once
// A fixed pool of worker threads. parallel_for hands out tasks dynamically; each task must
// write to its own output so results never depend on the thread count.
#include <cstdint>
#include <functional>
#include <memory>

namespace ruvdllm {

class ThreadPool {
 public:
  // n_threads <= 0 means one thread per physical core. The calling thread is one of them.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const;
  // Runs fn(task, thread_index) for every task in [0, n_tasks) and returns when all are done.
  // thread_index is in [0, size()) and lets a task use per-thread scratch memory.
  // An exception thrown by a task is rethrown here (the first one wins).
  void parallel_for(int64_t n_tasks, const std::function<void(int64_t task, int thread)>& fn);

  static int physical_cores();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ruvdllm
