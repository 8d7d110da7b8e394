// Distributo's WorkerClient processTasks: a whole batch of tasks in, a batch of results out.
class WordWorker {
  async processTasks(tasks) {
    const results = [];
    for (const task of tasks) {
      // Implement your custom logic here
      const data = await scrapeSyllableData(task.word, tasks.length);
      results.push({ word: task.word, syllableData: data });
    }
    return results;
  }
}

async function scrapeSyllableData(word, batch) {
  await new Promise((resolve) => setTimeout(resolve, 20));
  return { vowels: (word.match(/[aeiou]/g) || []).length, batch };
}

module.exports = WordWorker;
