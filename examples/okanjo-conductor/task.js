// The worker side of the okanjo-conductor example: MyMathProcessor.processJob.
class MyMathProcessor {
  async run(job) {
    // display the square of the number we are processing
    console.log(`Worker ${process.env.QUEUEXEC_WORKER_ID}, Job ${job} => the square is ${job * job}`);
    // let's pretend that this took a while to complete
    await new Promise((resolve) => setTimeout(resolve, 100));
    return job * job;
  }
}
module.exports = MyMathProcessor;
