// A reader-writer lock that does not starve writers. std::shared_mutex on glibc prefers readers:
// with searches arriving back to back, add/remove could wait forever. Here a writer first takes
// the gate, so readers that arrive after it wait until it is done; readers never nest.
#pragma once
#include <mutex>
#include <shared_mutex>

namespace spqindex {

class WriterPreferringMutex {
 public:
  void lock() {
    std::lock_guard<std::mutex> gate(gate_);
    rw_.lock();  // waits for the readers already inside; new ones queue at the gate
  }
  void unlock() { rw_.unlock(); }
  void lock_shared() {
    {
      std::lock_guard<std::mutex> gate(gate_);
    }
    rw_.lock_shared();
  }
  void unlock_shared() { rw_.unlock_shared(); }

 private:
  std::mutex gate_;
  std::shared_mutex rw_;
};

}  // namespace spqindex
